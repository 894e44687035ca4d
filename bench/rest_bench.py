"""REST Proxy throughput against one `josef serve` (Kafka and REST in one process), with httpx.

    .venv/bin/python bench/rest_bench.py [--clients 8] [--single-records 5000] \
        [--batch-records 200000] [--v3-records 50000] [--consume-records 100000]

Starts `josef serve` on free ports and a fresh data directory, then measures in turn:

- v2 produce, 1 record per request (`POST /topics/{t}`, JSON embedded format), from
  `--clients` concurrent HTTP clients;
- v2 produce, 100 records per request, likewise;
- v3 streaming produce: each client sends one chunked `POST /v3/.../records` carrying its
  share of the records as a stream of JSON objects and reads one delivery report per record;
- v2 consumer fetch: one consumer instance (json format, earliest) subscribed to the topic
  of the 100-record phase, polling `/records?max_bytes=...` until `--consume-records` records
  have come (the group join and the first answer are left out of the figure).

`--separate` runs `josef rest-proxy` as a process of its own against `josef serve --rest-port 0`
instead (two interpreters, two GILs). Every produce answer is checked (no per-record errors, the count of offsets); the consumer's
records are checked to be distinct offsets. Client and server share the machine: the table
shows the CPU each used during a phase (100% = one core), so a client-bound figure can be told
from a server-bound one. The client is Python too (httpx, asyncio).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

JOSEF = Path(sys.executable).parent / "josef"
V2 = "application/vnd.kafka.v2+json"
JSON_V2 = "application/vnd.kafka.json.v2+json"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"josef serve exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} not open after {timeout}s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Result:
    phase: str
    records: int
    requests: int
    seconds: float
    server_cpu: float
    client_cpu: float
    latencies: list[float] = field(default_factory=list)
    streams: bool = False  # requests are long streams: no per-request rate

    def row(self) -> str:
        lat = "–"
        if self.latencies:
            ordered = sorted(self.latencies)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            lat = f"{statistics.median(ordered) * 1000:.1f} / {p99 * 1000:.1f}"
        rate = "–" if self.streams else f"{self.requests / self.seconds:,.0f}"
        return (f"| {self.phase} | {self.records:,} | {self.records / self.seconds:,.0f} | "
                f"{rate} | {lat} | {self.server_cpu / self.seconds:.0%} | "
                f"{self.client_cpu / self.seconds:.0%} |")

    def as_dict(self) -> dict:
        return {"phase": self.phase, "records": self.records, "requests": self.requests,
                "seconds": round(self.seconds, 3), "records_per_s": round(self.records / self.seconds),
                "server_cpu": round(self.server_cpu / self.seconds, 2),
                "client_cpu": round(self.client_cpu / self.seconds, 2)}


class Bench:
    def __init__(self, args, rest_url: str, server_pids: list[int]):
        self.args = args
        self.url = rest_url
        self.pids = server_pids
        self.value = "x" * args.value_size

    def server_cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def client(self, **kw) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=self.args.clients + 2, max_keepalive_connections=self.args.clients + 2)
        return httpx.AsyncClient(base_url=self.url, timeout=120, limits=limits, **kw)

    async def measure(self, phase: str, work, streams: bool = False) -> Result:
        cpu0, own0, t0 = self.server_cpu(), time.process_time(), time.perf_counter()
        records, requests, latencies = await work()
        seconds = time.perf_counter() - t0
        result = Result(phase, records, requests, seconds, self.server_cpu() - cpu0,
                        time.process_time() - own0, latencies, streams)
        print(result.row(), flush=True)
        return result

    async def create_topic(self, http: httpx.AsyncClient, name: str) -> None:
        cid = (await http.get("/v3/clusters")).json()["data"][0]["cluster_id"]
        r = await http.post(f"/v3/clusters/{cid}/topics", json={"topic_name": name,
                                                               "partitions_count": self.args.partitions})
        if r.status_code != 201:
            raise SystemExit(f"cannot create {name}: {r.status_code} {r.text}")

    def records(self, start: int, count: int) -> list[dict]:
        return [{"key": f"k{i}", "value": {"id": i, "payload": self.value}} for i in range(start, start + count)]

    async def v2_produce(self, topic: str, total: int, per_request: int) -> Result:
        async with self.client() as http:
            await self.create_topic(http, topic)
            # one warm-up request per client: connections open, topic metadata cached
            await asyncio.gather(*(self._post_v2(http, topic, self.records(0, 1)) for _ in range(self.args.clients)))
            requests = total // per_request
            shares = [requests // self.args.clients + (1 if c < requests % self.args.clients else 0)
                      for c in range(self.args.clients)]

            async def one_client(c: int, share: int, latencies: list):
                base = c * (requests // self.args.clients + 1) * per_request
                for n in range(share):
                    t = time.perf_counter()
                    await self._post_v2(http, topic, self.records(base + n * per_request, per_request))
                    latencies.append(time.perf_counter() - t)

            async def work():
                latencies: list[float] = []
                await asyncio.gather(*(one_client(c, s, latencies) for c, s in enumerate(shares)))
                return requests * per_request, requests, latencies
            return await self.measure(f"v2 produce, {per_request} record{'s' if per_request > 1 else ''}/request",
                                      work)

    @staticmethod
    async def _post_v2(http: httpx.AsyncClient, topic: str, records: list[dict]) -> None:
        body = json.dumps({"records": records}, separators=(",", ":"))
        r = await http.post(f"/topics/{topic}", content=body, headers={"Content-Type": JSON_V2, "Accept": V2})
        if r.status_code != 200:
            raise SystemExit(f"produce failed: {r.status_code} {r.text[:300]}")
        offsets = r.json()["offsets"]
        if len(offsets) != len(records) or any(o["error_code"] is not None for o in offsets):
            raise SystemExit(f"produce answered errors: {offsets[:3]}")

    async def v3_stream(self, topic: str, total: int) -> Result:
        async with self.client() as http:
            await self.create_topic(http, topic)
            cid = (await http.get("/v3/clusters")).json()["data"][0]["cluster_id"]
            path = f"/v3/clusters/{cid}/topics/{topic}/records"
            value = self.value

            async def stream(c: int, count: int) -> int:
                async def body():
                    chunk = []
                    for i in range(count):
                        chunk.append(json.dumps({"key": {"type": "STRING", "data": f"k{c}-{i}"},
                                                 "value": {"type": "JSON", "data": {"id": i, "payload": value}}},
                                                separators=(",", ":")))
                        if len(chunk) == 100 or i == count - 1:
                            yield ("\n".join(chunk) + "\n").encode()
                            chunk = []
                ok = 0
                async with http.stream("POST", path, content=body(),
                                       headers={"Content-Type": "application/json"}) as r:
                    if r.status_code != 200:
                        raise SystemExit(f"v3 produce failed: {r.status_code} {(await r.aread())[:300]!r}")
                    async for line in r.aiter_lines():
                        if line.strip():
                            answer = json.loads(line)
                            if answer.get("error_code") != 200:
                                raise SystemExit(f"v3 produce answered an error: {answer}")
                            ok += 1
                return ok

            await stream(-1, 1)  # warm-up
            shares = [total // self.args.clients] * self.args.clients

            async def work():
                answered = await asyncio.gather(*(stream(c, s) for c, s in enumerate(shares)))
                if sum(answered) != sum(shares):
                    raise SystemExit(f"v3 stream: {sum(answered)} answers for {sum(shares)} records")
                return sum(shares), len(shares), []
            return await self.measure(f"v3 streaming produce, {len(shares)} streams", work, streams=True)

    async def v2_consume(self, topic: str, total: int) -> Result | None:
        group = f"bench-{os.getpid()}"
        async with self.client() as http:
            r = await http.post(f"/consumers/{group}", headers={"Content-Type": V2},
                                json={"name": "c1", "format": "json", "auto.offset.reset": "earliest",
                                      "auto.commit.enable": "false"})
            if r.status_code != 200:
                raise SystemExit(f"consumer create failed: {r.status_code} {r.text}")
            base = f"/consumers/{group}/instances/c1"
            r = await http.post(f"{base}/subscription", headers={"Content-Type": V2}, json={"topics": [topic]})
            if r.status_code != 204:
                raise SystemExit(f"subscribe failed: {r.status_code} {r.text}")
            try:
                seen: set[tuple[int, int]] = set()

                async def poll() -> float:
                    t = time.perf_counter()
                    r = await http.get(f"{base}/records", params={"max_bytes": self.args.max_bytes},
                                       headers={"Accept": JSON_V2})
                    if r.status_code != 200:
                        raise SystemExit(f"poll failed: {r.status_code} {r.text[:300]}")
                    for m in r.json():
                        seen.add((m["partition"], m["offset"]))
                    return time.perf_counter() - t

                # the group join and the first answer are not counted: steady-state fetching is
                t0 = time.perf_counter()
                while not seen:
                    await poll()
                    if time.perf_counter() - t0 > 60:
                        raise SystemExit("no record within 60 s of subscribing")
                first = len(seen)
                print(f"  (consumer: join and first {first} records took {time.perf_counter() - t0:.2f} s)")
                if first >= total:
                    print("  (the first poll brought every record: consume more, or lower --max-bytes)")
                    return None

                async def work():
                    polls, latencies = 0, []
                    deadline = time.monotonic() + 300
                    while len(seen) < total:
                        if time.monotonic() > deadline:
                            raise SystemExit(f"consumed {len(seen)} of {total} records in 300 s")
                        latencies.append(await poll())
                        polls += 1
                    return len(seen) - first, polls, latencies
                return await self.measure("v2 consumer fetch (1 instance)", work)
            finally:
                await http.delete(base, headers={"Content-Type": V2})


async def run(args, rest_url: str, pids: list[int]) -> list[Result]:
    bench = Bench(args, rest_url, pids)
    print(f"clients {args.clients}, {args.partitions} partitions, values ~{args.value_size + 30} bytes of JSON, "
          f"consumer polls of max_bytes={args.max_bytes}")
    print("| phase | records | records/s | requests/s | latency p50 / p99 ms | server CPU | client CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    results = []  # a phase given 0 records is skipped (the consumer reads the 100-record phase's topic)
    if args.single_records:
        results.append(await bench.v2_produce("bench-v2-single", args.single_records, 1))
    if args.batch_records:
        results.append(await bench.v2_produce("bench-v2-batch", args.batch_records, 100))
    if args.v3_records:
        results.append(await bench.v3_stream("bench-v3-stream", args.v3_records))
    consume = min(args.consume_records, args.batch_records // 100 * 100)
    if consume:
        result = await bench.v2_consume("bench-v2-batch", consume)
        if result is not None:
            results.append(result)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    p.add_argument("--partitions", type=int, default=3, help="partitions of each topic (default 3)")
    p.add_argument("--value-size", type=int, default=100, help="payload characters per record (default 100)")
    p.add_argument("--single-records", type=int, default=5000, help="records sent 1 per request (default 5000)")
    p.add_argument("--batch-records", type=int, default=200_000,
                   help="records sent 100 per request (default 200000)")
    p.add_argument("--v3-records", type=int, default=50_000, help="records of the v3 streams (default 50000)")
    p.add_argument("--consume-records", type=int, default=100_000,
                   help="records read through the v2 consumer (default 100000)")
    p.add_argument("--max-bytes", type=int, default=1 << 20,
                   help="max_bytes of each consumer poll: a poll returns once that much is buffered, "
                        "else after consumer.request.timeout.ms (default 1048576)")
    p.add_argument("--separate", action="store_true",
                   help="run the REST Proxy as its own process (`josef rest-proxy`) beside `josef serve "
                        "--rest-port 0`; server CPU is then the sum of both")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    p.add_argument("--keep-data", action="store_true", help="keep the broker's data directory")
    args = p.parse_args()

    data = tempfile.mkdtemp(prefix="josef-rest-bench-")
    kafka_port, rest_port = free_port(), free_port()
    log = open(Path(data) / "serve.log", "wb")
    procs = []
    try:
        if args.separate:  # the broker alone, and `josef rest-proxy` as a process of its own
            procs.append(subprocess.Popen([str(JOSEF), "serve", "--port", str(kafka_port), "--rest-port", "0",
                                           "--data-dir", str(Path(data) / "data")],
                                          stdout=log, stderr=subprocess.STDOUT))
            wait_port(kafka_port, procs[0])
            procs.append(subprocess.Popen([str(JOSEF), "rest-proxy", "--bootstrap-server", f"127.0.0.1:{kafka_port}",
                                           "--listeners", f"http://127.0.0.1:{rest_port}"],
                                          stdout=log, stderr=subprocess.STDOUT))
            wait_port(rest_port, procs[1])
            what = "josef serve --rest-port 0 + josef rest-proxy"
        else:
            procs.append(subprocess.Popen([str(JOSEF), "serve", "--port", str(kafka_port), "--rest-port",
                                           str(rest_port), "--data-dir", str(Path(data) / "data")],
                                          stdout=log, stderr=subprocess.STDOUT))
            wait_port(kafka_port, procs[0])
            wait_port(rest_port, procs[0])
            what = "josef serve (Kafka and REST in one process)"
        load = os.getloadavg()[0]
        print(f"{what}: Kafka 127.0.0.1:{kafka_port}, REST 127.0.0.1:{rest_port}; load average {load:.2f}, "
              f"{os.cpu_count()} CPUs")
        results = asyncio.run(run(args, f"http://127.0.0.1:{rest_port}", [p.pid for p in procs]))
        if args.json:
            print(json.dumps([r.as_dict() for r in results]))
    finally:
        for proc in reversed(procs):  # the proxy first: it flushes to the broker
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
        if args.keep_data:
            print(f"data kept in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)

if __name__ == "__main__":
    main()
