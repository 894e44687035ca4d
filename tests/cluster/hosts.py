"""Simulated hosts for cluster tests: one Linux network namespace per host, on one switch.

Host i is the namespace `<prefix>-h<i>` with the address `<subnet>.i/24` on its eth0, a
veth plugged into a bridge that lives in the namespace `<prefix>-sw`; the prefix is
`jnp<pid of the test process>` (concurrent runs never meet; the hosts of a run that was
killed are removed by the next one) and the subnet 198.18.42 (netns.sh uses 198.18.0). Links are cut with
a firewall inside the host namespaces (nftables, else iptables): packets are dropped, not
refused, as in a real partition, so a peer learns of it only from its own timeouts. The
root namespace gets the route `unreachable <subnet>.0/24` while the hosts exist, so that
nothing aimed at them can leave the machine: processes reach a host only from another one.

`ClientHost` runs an agent (this file run as a script) inside a host namespace that does
a test's client side there: metadata, topic creation, a steady producer, reading back.
Only standard-library imports at module level: the agent imports confluent_kafka itself.

Needs root, iproute2 (`ip netns`) and nftables or iptables (Debian: `nftables`).
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

FIREWALL_TABLE = "josef_partition"
PREFIX = "jnp"  # namespace names: jnp<pid of the test process>-h<i>, jnp<pid>-sw


def _run(args: list[str], check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def firewall_backend() -> str | None:
    """'nft' or 'iptables', whichever is installed (JOSEF_TEST_FIREWALL may pick one)."""
    wanted = os.environ.get("JOSEF_TEST_FIREWALL")
    for tool in ([wanted] if wanted else ["nft", "iptables"]):
        if shutil.which(tool):
            return tool
    return None


def unavailable_reason() -> str | None:
    """Why simulated hosts cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    try:
        if _run(["ip", "netns", "list"], check=False, timeout=5).returncode != 0:
            return "`ip netns` is not available"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`ip netns` is not available: {e}"
    if firewall_backend() is None:
        wanted = os.environ.get("JOSEF_TEST_FIREWALL")
        return (f"JOSEF_TEST_FIREWALL={wanted} is not installed" if wanted else
                "neither nft nor iptables is installed (Debian package: nftables)")
    return None


def pid_alive(pid: int) -> bool:
    """A process that exists and is not a zombie (PID 1 on these machines reaps late)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Hosts:
    """`n` hosts; create() them, cut and heal links between them, destroy() them."""

    def __init__(self, n: int, prefix: str | None = None, subnet: str = "198.18.42"):
        # one prefix per test process, so that concurrent runs never touch each other's hosts
        self.n, self.prefix, self.subnet = n, prefix or f"{PREFIX}{os.getpid()}", subnet
        self.switch = f"{self.prefix}-sw"
        self.firewall = firewall_backend()
        self.cut_links: set[tuple[int, int]] = set()

    # --- names -------------------------------------------------------------------------

    def ns(self, i: int) -> str:
        return f"{self.prefix}-h{i}"

    def addr(self, i: int) -> str:
        return f"{self.subnet}.{i}"

    def exec_args(self, i: int, *command: str) -> list[str]:
        """The command line that runs `command` on host i."""
        return ["ip", "netns", "exec", self.ns(i), *command]

    def run(self, i: int, *command: str, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess:
        return _run(self.exec_args(i, *command), check=check, timeout=timeout)

    @staticmethod
    def _namespaces() -> set[str]:
        listed = _run(["ip", "netns", "list"], check=False).stdout.split("\n")
        return {line.split()[0] for line in listed if line.strip()}

    def _ours(self) -> list[str]:
        pattern = re.compile(rf"{re.escape(self.prefix)}-(sw|h\d+)")
        return sorted(ns for ns in self._namespaces() if pattern.fullmatch(ns))

    @classmethod
    def remove_abandoned(cls) -> None:
        """Delete the hosts of test processes that died without cleaning up (killed runs)."""
        pattern = re.compile(rf"{PREFIX}(\d+)-(sw|h\d+)")
        dead = {int(m.group(1)) for ns in cls._namespaces() if (m := pattern.fullmatch(ns))
                and not pid_alive(int(m.group(1)))}
        for pid in dead:
            cls(0, prefix=f"{PREFIX}{pid}").destroy()

    # --- life cycle --------------------------------------------------------------------

    def create(self) -> "Hosts":
        self.remove_abandoned()
        if self._ours():
            self.destroy()
        if f"inet {self.subnet}." in _run(["ip", "-4", "addr", "show"]).stdout:
            raise RuntimeError(f"the root namespace has an address in {self.subnet}.0/24")
        _run(["ip", "route", "replace", "unreachable", f"{self.subnet}.0/24"])
        _run(["ip", "netns", "add", self.switch])
        self._no_ipv6(self.switch)
        _run(["ip", "-n", self.switch, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", self.switch, "link", "set", "br0", "up"])
        for i in range(1, self.n + 1):
            ns = self.ns(i)
            _run(["ip", "netns", "add", ns])
            self._no_ipv6(ns)
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"v{i}",
                  "netns", self.switch])
            _run(["ip", "-n", self.switch, "link", "set", f"v{i}", "master", "br0"])
            _run(["ip", "-n", self.switch, "link", "set", f"v{i}", "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            self._firewall_base(i)
        return self

    def _no_ipv6(self, ns: str) -> None:
        _run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
              "net.ipv6.conf.default.disable_ipv6=1"], check=False)

    def destroy(self) -> list[str]:
        """Stop whatever still runs inside the hosts (by PID), delete them and the route.

        Returns what it had to kill: callers stop their own processes first, so anything
        here is a leak worth reporting."""
        killed = []
        for ns in self._ours():
            pids = [int(p) for p in _run(["ip", "netns", "pids", ns], check=False).stdout.split()
                    if pid_alive(int(p))]
            for pid in pids:
                killed.append(f"{ns}:{pid}")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            _run(["ip", "netns", "del", ns], check=False)
        others = [ns for ns in self._namespaces() if re.fullmatch(rf"{PREFIX}\d+-sw", ns)]
        if not others and _run(["ip", "route", "show", "type", "unreachable", f"{self.subnet}.0/24"],
                               check=False).stdout.strip():  # the last hosts of any run are gone
            _run(["ip", "route", "del", "unreachable", f"{self.subnet}.0/24"], check=False)
        self.cut_links.clear()
        return killed

    # --- cutting and healing links -----------------------------------------------------

    def _firewall_base(self, i: int) -> None:
        if self.firewall == "nft":
            rules = (f"table inet {FIREWALL_TABLE} {{\n"
                     "  set blocked { type ipv4_addr; }\n"
                     "  chain input { type filter hook input priority 0; policy accept; ip saddr @blocked drop; }\n"
                     "  chain output { type filter hook output priority 0; policy accept; ip daddr @blocked drop; }\n"
                     "}\n")
            done = subprocess.run(self.exec_args(i, "nft", "-f", "-"), input=rules, capture_output=True,
                                  text=True, timeout=15)
            if done.returncode != 0:
                raise RuntimeError(f"nft on host {i}: {done.stderr.strip()}")
        elif self.firewall == "iptables":
            self.run(i, "iptables", "-w", "-F", "INPUT")
            self.run(i, "iptables", "-w", "-F", "OUTPUT")
        else:
            raise RuntimeError("no firewall tool (install nftables)")

    def _block(self, i: int, j: int) -> None:
        """Host i drops everything to and from host j."""
        if self.firewall == "nft":
            self.run(i, "nft", "add", "element", "inet", FIREWALL_TABLE, "blocked", f"{{ {self.addr(j)} }}")
        else:
            self.run(i, "iptables", "-w", "-A", "INPUT", "-s", self.addr(j), "-j", "DROP")
            self.run(i, "iptables", "-w", "-A", "OUTPUT", "-d", self.addr(j), "-j", "DROP")

    def cut(self, i: int, j: int) -> None:
        """Drop all traffic between hosts i and j, both ways."""
        if (min(i, j), max(i, j)) in self.cut_links:
            return
        self._block(i, j)
        self._block(j, i)
        self.cut_links.add((min(i, j), max(i, j)))

    def isolate(self, i: int, keep: tuple[int, ...] = ()) -> None:
        """Cut host i from every other host except those in `keep`."""
        for j in range(1, self.n + 1):
            if j != i and j not in keep:
                self.cut(i, j)

    def heal(self) -> None:
        """Every link works again; neighbour caches are flushed so no one waits for ARP."""
        for i in range(1, self.n + 1):
            if self.firewall == "nft":
                self.run(i, "nft", "flush", "set", "inet", FIREWALL_TABLE, "blocked")
            else:
                self.run(i, "iptables", "-w", "-F", "INPUT")
                self.run(i, "iptables", "-w", "-F", "OUTPUT")
        for i in range(1, self.n + 1):
            self.run(i, "ip", "neigh", "flush", "all", check=False)
        self.cut_links.clear()


# --- the client agent ------------------------------------------------------------------------

class AgentError(Exception):
    pass


class ClientHost:
    """An agent process inside host i; call(op, **args) runs one operation there (JSON lines)."""

    def __init__(self, hosts: Hosts, i: int, log_path: Path):
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(hosts.exec_args(i, sys.executable, "-u", str(Path(__file__).resolve()),
                                                         "agent"),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         start_new_session=True)
        self._replies: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.call("ping", timeout=30)
        except AgentError:
            self.close()
            raise

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._replies.put(line)
        self._replies.put(None)

    def call(self, op: str, timeout: float = 30, **args):
        with self._lock:
            self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
            self.proc.stdin.flush()
            try:
                line = self._replies.get(timeout=timeout)
            except queue.Empty:
                self.close()  # its answer would come out of step with the next question
                raise AgentError(f"agent: no answer to {op} within {timeout}s") from None
        if line is None:
            raise AgentError(f"agent exited ({self.proc.poll()}); see {self.log_path}")
        reply = json.loads(line)
        if "error" in reply:
            raise AgentError(f"{op}: {reply['error']}")
        return reply["result"]

    def try_call(self, op: str, timeout: float = 30, **args):
        """call(), with None for an operation that failed inside the agent."""
        try:
            return self.call(op, timeout=timeout, **args)
        except AgentError as e:
            if self.proc.poll() is not None or "no answer" in str(e):
                raise
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)


class _Agent:
    """The agent's side: runs inside the client host, driven through stdin/stdout."""

    def __init__(self):
        self.lock = threading.Lock()
        self.producer_thread: threading.Thread | None = None
        self.stop = threading.Event()
        self.sent: list[str] = []
        self.acked: dict[str, int] = {}  # value -> offset
        self.failed: dict[str, str] = {}
        self.leftover = -1

    def op_ping(self):
        return "pong"

    def op_port_open(self, host: str, port: int, wait_s: float = 0.5):
        import socket
        try:
            with socket.create_connection((host, port), timeout=wait_s):
                return True
        except OSError:
            return False

    def op_zk_mode(self, host: str, port: int, wait_s: float = 1.0):
        """The Mode line of ZooKeeper's srvr (leader/follower), or '' if it does not serve."""
        import socket
        try:
            with socket.create_connection((host, port), timeout=wait_s) as s:
                s.settimeout(wait_s)
                s.sendall(b"srvr")
                chunks = []
                while chunk := s.recv(4096):
                    chunks.append(chunk)
        except OSError:
            return ""
        for line in b"".join(chunks).decode(errors="replace").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return ""

    def op_metadata(self, bootstrap: str, topic: str | None = None, wait_s: float = 3.0):
        """What the bootstrap broker says: brokers, controller and the topic's partitions."""
        from confluent_kafka.admin import AdminClient
        admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 2000})
        md = admin.list_topics(topic, timeout=wait_s)
        topics = {}
        for name, t in md.topics.items():
            topics[name] = {str(p.id): {"leader": p.leader, "isr": sorted(p.isrs), "replicas": list(p.replicas),
                                        "error": str(p.error) if p.error else None}
                            for p in t.partitions.values()}
        return {"brokers": sorted(md.brokers), "controller": md.controller_id, "topics": topics,
                "answered_by": md.orig_broker_id}

    def op_create_topic(self, bootstrap: str, topic: str, partitions: int, rf: int, config: dict):
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, partitions, rf, config=config)],
                            operation_timeout=10)[topic].result(15)
        return True

    def op_produce_start(self, bootstrap: str, topic: str, config: dict, rate: float, prefix: str = "v"):
        """Send unique values `prefix<i>` at `rate` per second until produce_stop."""
        from confluent_kafka import Producer
        producer = Producer({"bootstrap.servers": bootstrap, **config})
        self.stop.clear()

        def delivered(err, msg, value):
            with self.lock:
                if err is None:
                    self.acked[value] = msg.offset()
                else:
                    self.failed[value] = str(err)

        def run():
            i = 0
            started = time.monotonic()
            while not self.stop.is_set():
                value = f"{prefix}{i}"
                try:
                    producer.produce(topic, value.encode(),
                                     on_delivery=lambda err, msg, value=value: delivered(err, msg, value))
                except BufferError:
                    producer.poll(0.05)
                    continue
                with self.lock:
                    self.sent.append(value)
                i += 1
                producer.poll(0)
                ahead = started + i / rate - time.monotonic()
                if ahead > 0:
                    producer.poll(ahead)
            self.leftover = producer.flush(self.flush_timeout)
        self.flush_timeout = 60.0
        self.producer_thread = threading.Thread(target=run, daemon=True)
        self.producer_thread.start()
        return True

    def op_produce_one(self, bootstrap: str, topic: str, value: str, config: dict, wait_s: float = 10.0):
        """Send one value with its own producer: {"error": text or None, "offset": acknowledged offset}."""
        from confluent_kafka import Producer
        producer = Producer({"bootstrap.servers": bootstrap, **config})
        result = {}
        producer.produce(topic, value.encode(),
                         on_delivery=lambda err, msg: result.update(error=str(err) if err else None,
                                                                    offset=msg.offset()))
        left = producer.flush(wait_s)
        return result if result else {"error": f"no delivery report within {wait_s}s ({left} queued)",
                                      "offset": -1}

    def op_produce_progress(self):
        with self.lock:
            return {"sent": len(self.sent), "acked": len(self.acked), "failed": len(self.failed),
                    "last_failure": next(reversed(self.failed.values()), None) if self.failed else None}

    def op_produce_stop(self, flush_timeout: float = 60.0):
        self.flush_timeout = flush_timeout
        self.stop.set()
        if self.producer_thread is not None:
            self.producer_thread.join(flush_timeout + 10)
        with self.lock:
            unresolved = [v for v in self.sent if v not in self.acked and v not in self.failed]
            return {"sent": self.sent, "acked": self.acked, "failed": self.failed, "unresolved": unresolved,
                    "leftover": self.leftover}

    def op_read_back(self, bootstrap: str, topic: str, partition: int, expected: int, wait_s: float = 30.0):
        """Every record of the partition from the start as [offset, value], up to its end."""
        import uuid

        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}",
                             "enable.auto.commit": False, "enable.partition.eof": True})
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        records, at_end = [], False
        deadline = time.monotonic() + wait_s
        try:
            while time.monotonic() < deadline and (len(records) < expected or not at_end):
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_end = True
                    continue
                at_end = False
                records.append([msg.offset(), msg.value().decode()])
        finally:
            consumer.close()
        return records


def agent_main() -> None:
    agent = _Agent()
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        try:
            reply = {"result": getattr(agent, f"op_{op}")(**request)}
        except Exception as e:  # reported to the test, which decides
            reply = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__" and sys.argv[1:] == ["agent"]:
    agent_main()
