"""Produce/consume with the log cleaner busy vs idle, in one compare run (issue 4's 10% target).

Builds once a data directory holding a compacted topic full of overwritten keys (written with
the cleaner off), then runs the shared harness's compare.py: both sides start from a fresh
copy of it; A runs the cleaner (so it compacts that topic during kbench's phases), B has it
disabled. Usage:

    .venv/bin/python bench/compaction_overhead.py [--mb 500] [--rounds 3] [-- kbench args]
"""
from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
JOSEF = ROOT / ".venv" / "bin" / "josef"
COMPARE = Path("/work/shared/bench/compare.py")
BENCH_PY = "/tmp/benchvenv/bin/python"
TEMPLATE = Path("/tmp/josef-dirty-template")


def build_template(megabytes: int, port: int = 19571) -> None:
    shutil.rmtree(TEMPLATE, ignore_errors=True)
    broker = subprocess.Popen([str(JOSEF), "serve", "--port", str(port), "--rest-port", "0", "--data-dir",
                               str(TEMPLATE), "--override", "log.cleaner.enable=false"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        deadline = time.monotonic() + 10
        while True:
            try:
                admin.list_topics(timeout=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
        admin.create_topics([NewTopic("dirty", 1, 1, config={
            "cleanup.policy": "compact", "segment.bytes": str(8 << 20), "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0"})])["dirty"].result(10)
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "linger.ms": 20, "acks": 1})
        value = b"v" * 1000
        keys = 50_000
        for i in range(megabytes * 1000):
            while True:
                try:
                    producer.produce("dirty", value, b"key-%d" % (i % keys))
                    break
                except BufferError:
                    producer.poll(0.05)
        assert producer.flush(120) == 0
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(60)
    size = sum(f.stat().st_size for f in (TEMPLATE / "dirty-0").glob("*.log"))
    print(f"template: {size / 2**20:.0f} MiB of overwrites in {TEMPLATE}/dirty-0", file=sys.stderr)


def main() -> int:
    args, _, kbench_args = " ".join(sys.argv[1:]).partition(" -- ")
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mb", type=int, default=500, help="size of the dirty compacted topic")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reuse", action="store_true", help="keep an existing template")
    opts = p.parse_args(args.split())
    if not (opts.reuse and TEMPLATE.exists()):
        build_template(opts.mb)
    start = (f"rm -rf {{dir}} && cp -r {TEMPLATE} {{dir}} && exec {JOSEF} serve --port {{port}} "
             f"--rest-port 0 --data-dir {{dir}}")
    a = start.replace("{dir}", "/tmp/bd-cleaning") + " --override log.cleaner.backoff.ms=100"
    b = start.replace("{dir}", "/tmp/bd-idle") + " --override log.cleaner.enable=false"
    cmd = [BENCH_PY, str(COMPARE), "--rounds", str(opts.rounds), "--a-name", "cleaning", "--a-port", "19572",
           "--a-cmd", a, "--b-name", "idle", "--b-port", "19573", "--b-cmd", b, "--",
           *(kbench_args.split() or ["--quick", "--phases", "produce_acks1,consume,latency"])]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
