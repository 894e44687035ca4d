"""`josef cluster`: the seed's docker-compose topology as local processes, with compose's verbs.

    josef cluster [--dir DIR] [--brokers N] [--zookeepers M] [port options] VERB [args]

    up [-d] [SERVICE...]      start what is not running (ZooKeeper, then brokers, then the REST
                              Proxy) and wait until the cluster serves; without -d follow the
                              logs and stop everything on Ctrl-C
    ps                        NAME, COMMAND, STATUS, PID, PORTS of every service
    logs [-f] [-n N] [SERVICE...]
    stop [-t SECS] [SERVICE...]   SIGTERM, SIGKILL after SECS (10)
    start [SERVICE...]        start stopped services and wait until they serve
    restart [SERVICE...]
    kill [-s SIGNAL] [SERVICE...]
    down [-v]                 stop and remove; -v also removes the data directories

Services: zookeeper-1..M (Apache ZooKeeper), broker-1..N (`josef broker`), rest-proxy
(`josef rest-proxy`). State lives in ./josef-cluster (--dir); the shape and ports given to
`up` are remembered there, so later verbs need no flags. The process bookkeeping and every
command line are in josef.cluster.launcher.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from josef.cluster import launcher as L
from josef.cluster.launcher import ClusterError, Ports, Service, Shape, Topology

PROG = "josef cluster"
DEFAULT_DIR = "josef-cluster"
WAIT_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

_PORT_FLAGS = {  # flag -> Ports field
    "--kafka-port": "kafka", "--internal-port": "internal", "--zookeeper-port": "zookeeper",
    "--quorum-port": "quorum", "--election-port": "election", "--rest-port": "rest",
}
_PORT_HELP = {
    "kafka": "broker-1's HOST listener (clients; localhost)",
    "internal": "broker-1's INTERNAL listener (inter-broker, REST Proxy)",
    "zookeeper": "zookeeper-1's client port",
    "quorum": "zookeeper-1's quorum port",
    "election": "zookeeper-1's leader-election port",
    "rest": "the REST Proxy",
}


def say(text: str = "") -> None:
    print(text, flush=True)


# -- arguments --------------------------------------------------------------------------------

def _global_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = {"default": argparse.SUPPRESS} if suppress else {"default": None}
    g = p.add_argument_group("cluster options (also accepted before the verb)")
    g.add_argument("--dir", help=f"state directory (default ./{DEFAULT_DIR})", **d)
    g.add_argument("--brokers", type=int, metavar="N", help="number of brokers (default 3)", **d)
    g.add_argument("--zookeepers", type=int, metavar="M", help="ZooKeeper ensemble size (default 3)", **d)
    defaults = Ports()
    for flag, attr in _PORT_FLAGS.items():
        g.add_argument(flag, type=int, metavar="PORT", dest=attr + "_port",
                       help=f"{_PORT_HELP[attr]} (default {getattr(defaults, attr)})"
                            + ("" if attr == "rest" else "; member i uses PORT+i-1"), **d)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Run the seed's compose topology (ZooKeeper "
                                "ensemble, brokers, REST Proxy) as local processes.")
    _global_options(p, suppress=False)
    sub = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        v = sub.add_parser(name, help=text, description=text)
        _global_options(v, suppress=True)
        return v

    v = verb("up", "Start every service that is not running and wait until the cluster serves.")
    v.add_argument("-d", "--detach", action="store_true", help="return once serving (else follow the logs)")
    v.add_argument("--wait-timeout", type=float, default=WAIT_TIMEOUT, metavar="SECS",
                   help=f"give up when not serving after SECS (default {WAIT_TIMEOUT:.0f})")
    v.add_argument("-t", "--timeout", type=float, default=STOP_TIMEOUT, metavar="SECS",
                   help="shutdown timeout when an attached up is stopped")
    v.add_argument("services", nargs="*", metavar="SERVICE", help="only these (and what they depend on)")
    v = verb("ps", "List the services.")
    v.add_argument("-a", "--all", action="store_true", help="accepted for compose compatibility (always all)")
    v.add_argument("--services", action="store_true", help="print the service names only")
    v = verb("logs", "Show service output.")
    v.add_argument("-f", "--follow", action="store_true")
    v.add_argument("-n", "--tail", default="all", metavar="N", help="lines from the end of each log")
    v.add_argument("--no-log-prefix", action="store_true")
    v.add_argument("services", nargs="*", metavar="SERVICE")
    v = verb("stop", "Stop services (SIGTERM, then SIGKILL after the timeout).")
    v.add_argument("-t", "--timeout", type=float, default=STOP_TIMEOUT, metavar="SECS")
    v.add_argument("services", nargs="*", metavar="SERVICE")
    v = verb("start", "Start stopped services and wait until they serve.")
    v.add_argument("--wait-timeout", type=float, default=WAIT_TIMEOUT, metavar="SECS")
    v.add_argument("services", nargs="*", metavar="SERVICE")
    v = verb("restart", "Stop, then start services.")
    v.add_argument("-t", "--timeout", type=float, default=STOP_TIMEOUT, metavar="SECS")
    v.add_argument("--wait-timeout", type=float, default=WAIT_TIMEOUT, metavar="SECS")
    v.add_argument("services", nargs="*", metavar="SERVICE")
    v = verb("kill", "Send a signal (default SIGKILL) to services.")
    v.add_argument("-s", "--signal", default="SIGKILL")
    v.add_argument("services", nargs="*", metavar="SERVICE")
    v = verb("down", "Stop and remove the services; -v also removes their data.")
    v.add_argument("-v", "--volumes", action="store_true", help="remove the data directories and the state")
    v.add_argument("-t", "--timeout", type=float, default=STOP_TIMEOUT, metavar="SECS")
    return p


# -- topology ---------------------------------------------------------------------------------

def _load_saved(state: Path) -> Shape | None:
    import json
    path = state / "cluster.json"
    if not path.exists():
        return None
    try:
        return Shape.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ClusterError(f"{path} is unreadable ({e}); `{PROG} down -v` resets the cluster") from None


def _requested(args: argparse.Namespace, base: Shape) -> Shape:
    ports = {attr: getattr(args, attr + "_port", None) for attr in _PORT_FLAGS.values()}
    ports = {k: v for k, v in ports.items() if v is not None}
    brokers = getattr(args, "brokers", None)
    zookeepers = getattr(args, "zookeepers", None)
    shape = Shape(base.brokers if brokers is None else brokers,
                  base.zookeepers if zookeepers is None else zookeepers,
                  Ports(**{**base.ports.__dict__, **ports}))
    if shape.brokers < 0 or shape.brokers > 100:
        raise ClusterError("--brokers must be between 0 and 100")
    if shape.zookeepers < 1 or shape.zookeepers > 15:
        raise ClusterError("--zookeepers must be between 1 and 15")
    counts = {"kafka": shape.brokers, "internal": shape.brokers, "zookeeper": shape.zookeepers,
              "quorum": shape.zookeepers, "election": shape.zookeepers, "rest": 1}
    for attr, n in counts.items():
        base_port = getattr(shape.ports, attr)
        if not (1 <= base_port and base_port + max(n, 1) - 1 <= 65535):
            raise ClusterError(f"--{attr}-port {base_port}: ports must lie in 1..65535")
    return shape


def topology(args: argparse.Namespace, may_reshape: bool = False) -> Topology:
    state = Path(getattr(args, "dir", None) or DEFAULT_DIR).absolute()
    saved = _load_saved(state)
    shape = _requested(args, saved or Shape())
    topo = Topology(state, shape)
    if saved is not None and shape != saved:
        old = Topology(state, saved)
        running = [s.name for s in old.services() if old.running(s.name)]
        if not may_reshape or running:
            raise ClusterError(
                f"the cluster in {state} was set up as {_describe(saved)}; "
                + (f"{', '.join(running)} still running: `{PROG} down` first to change it"
                   if running else f"only `{PROG} up` changes it"))
    return topo


def _describe(shape: Shape) -> str:
    p = shape.ports
    return (f"--brokers {shape.brokers} --zookeepers {shape.zookeepers} --kafka-port {p.kafka} "
            f"--internal-port {p.internal} --zookeeper-port {p.zookeeper} --quorum-port {p.quorum} "
            f"--election-port {p.election} --rest-port {p.rest}")


def save_shape(topo: Topology) -> None:
    import json
    topo.state_dir.mkdir(parents=True, exist_ok=True)
    topo.config_file.write_text(json.dumps(topo.shape.to_json(), indent=2) + "\n")


def select(topo: Topology, names: list[str], with_deps: bool = False) -> list[Service]:
    """Services by name (all when none), in start order; with their dependencies for `up`."""
    services = topo.services()
    if not names:
        return services
    known = {s.name for s in services}
    for n in names:
        if n not in known:
            raise ClusterError(f"no such service: {n} (services: {', '.join(sorted(known))})")
    wanted = set(names)
    if with_deps:  # as the seed's depends_on: brokers need ZooKeeper, the REST Proxy needs both;
        # and a ZooKeeper member needs its ensemble to serve
        top = max(s.tier for s in services if s.name in wanted)
        wanted |= {s.name for s in services if s.tier < top or s.kind == "zookeeper"}
    return [s for s in services if s.name in wanted]


def _require_cluster(topo: Topology) -> None:
    if not topo.config_file.exists():
        raise ClusterError(f"no cluster in {topo.state_dir} (start one with `{PROG} up -d`)")


# -- up / start -------------------------------------------------------------------------------

def _line(width: int, name: str, status: str, secs: float | None = None) -> None:
    say((f" Container {name:<{width}}  {status:<8}" + (f"  {secs:.1f}s" if secs is not None else "")).rstrip())


def start_services(topo: Topology, targets: list[Service], wait_timeout: float) -> None:
    """Start what is not running, tier by tier, each tier serving before the next starts."""
    width = max(len(s.name) for s in topo.services())
    to_start = [s for s in targets if not topo.running(s.name)]
    L.check_can_start(topo, to_start)
    deadline = time.monotonic() + wait_timeout
    for tier in sorted({s.tier for s in targets}):
        group = [s for s in targets if s.tier == tier]
        _check_dependencies(topo, [s for s in group if not topo.running(s.name)])
        began: dict[str, float] = {}
        for s in group:
            if topo.running(s.name):
                continue
            _line(width, s.name, "Starting")
            L.spawn(topo, s)
            began[s.name] = time.monotonic()
        want = None
        if tier == 2:
            want = [s.index for s in topo.services() if s.kind == "broker" and topo.running(s.name)]
        probe = L.RegistrationProbe(topo.zookeeper_connect()) if tier == 1 else None
        try:
            _wait_tier(topo, group, began, want, probe, deadline, wait_timeout, width)
        finally:
            if probe is not None:
                probe.close()


def _check_dependencies(topo: Topology, starting: list[Service]) -> None:
    """A broker needs ZooKeeper and the REST Proxy needs a broker (as depends_on)."""
    for s in starting:
        if s.tier == 0:
            continue
        needed = [d for d in topo.services() if d.tier == s.tier - 1]
        if not any(topo.running(d.name) for d in needed):
            what = "ZooKeeper" if s.tier == 1 else "broker"
            raise ClusterError(f"cannot start {s.name}: no {what} is running "
                               f"(`{PROG} up -d {s.name}` starts it with what it depends on)")


def _wait_tier(topo, group, began, want, probe, deadline, wait_timeout, width) -> None:
    pending = list(group)
    while pending:
        for s in list(pending):
            rec = topo.record(s.name)
            if rec is None:
                raise ClusterError(f"{s.name}: its record {topo.run_dir / (s.name + '.json')} disappeared "
                                   "during startup (was the state directory removed?)")
            if not rec.alive():
                raise ClusterError(f"{s.name} exited during startup; {L.log_tail(topo, s.name)}")
            if L.ready(topo, s, want, probe):
                pending.remove(s)
                if s.name in began:
                    _line(width, s.name, "Started", time.monotonic() - began[s.name])
                else:
                    _line(width, s.name, "Running")
        if pending and time.monotonic() > deadline:
            s = pending[0]
            raise ClusterError(f"{s.name} did not come up within {wait_timeout:.0f}s "
                               f"({_not_ready_reason(topo, s, want)}); {L.log_tail(topo, s.name)}")
        if pending:
            time.sleep(0.1)


def _not_ready_reason(topo: Topology, s: Service, want: list[int] | None) -> str:
    if s.kind == "zookeeper":
        return f"ZooKeeper on port {s.client_port} not serving" + (
            " (no quorum)" if topo.shape.zookeepers > 1 else "")
    if s.kind == "broker":
        closed = [str(p) for p in s.listen if not L.port_open(p)]
        return (f"port {', '.join(closed)} not open" if closed else
                f"not registered in ZooKeeper at /brokers/ids/{s.index}")
    got = L.rest_brokers(s.client_port)
    if got is None:
        return f"GET http://{L.HOST}:{s.client_port}/brokers does not answer"
    return f"GET /brokers lists {got}, expected {want}"


def cmd_up(args: argparse.Namespace) -> int:
    topo = topology(args, may_reshape=True)
    with topo.lock():
        targets = select(topo, args.services, with_deps=True)
        offsets = {s.name: _size(topo.log_path(s.name)) for s in targets}
        save_shape(topo)
        began = time.monotonic()
        try:
            start_services(topo, targets, args.wait_timeout)
        except (ClusterError, KeyboardInterrupt) as e:
            if args.detach:
                raise
            # attached: nothing outlives the command, as with compose
            _stop(topo, targets, args.timeout, quiet=True)
            if isinstance(e, KeyboardInterrupt):
                return 130
            raise
        n = len(targets)
        say(f"[+] Running {n}/{n}  ({time.monotonic() - began:.1f}s)")
    if args.detach:
        return 0
    return _attached(topo, targets, offsets, args.timeout)


def _attached(topo: Topology, targets: list[Service], offsets: dict[str, int], timeout: float) -> int:
    """The foreground `up`: follow the logs until Ctrl-C (or SIGTERM), then stop everything."""
    say("Attaching to " + ", ".join(s.name for s in targets))
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        follow(topo, [s.name for s in targets], offsets, prefix=True, until_all_exit=False)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say("Gracefully stopping... (press Ctrl+C again to force)")
    with topo.lock():
        try:
            _stop(topo, targets, timeout)
        except KeyboardInterrupt:
            _stop(topo, targets, 0.0)
    return 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def cmd_start(args: argparse.Namespace) -> int:
    topo = topology(args)
    _require_cluster(topo)
    with topo.lock():
        start_services(topo, select(topo, args.services), args.wait_timeout)
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    topo = topology(args)
    _require_cluster(topo)
    with topo.lock():
        targets = select(topo, args.services)
        _stop(topo, targets, args.timeout)
        start_services(topo, targets, args.wait_timeout)
    return 0


# -- stop / kill / down -----------------------------------------------------------------------

def _stop(topo: Topology, targets: list[Service], timeout: float, quiet: bool = False) -> None:
    """Stop in reverse start order (REST Proxy, brokers, ZooKeeper), each tier together."""
    width = max(len(s.name) for s in topo.services())
    began = time.monotonic()
    for tier in sorted({s.tier for s in targets}, reverse=True):
        recs = [r for s in targets if s.tier == tier and (r := topo.running(s.name))]
        for r in recs:
            if not quiet:
                _line(width, r.name, "Stopping")
        L.terminate(topo, recs, timeout,
                    on_stopped=None if quiet else
                    (lambda r: _line(width, r.name, "Stopped", time.monotonic() - began)))


def cmd_stop(args: argparse.Namespace) -> int:
    topo = topology(args)
    if not topo.config_file.exists():
        return 0
    with topo.lock():
        _stop(topo, select(topo, args.services), args.timeout)
    return 0


def _signal_number(name: str) -> int:
    text = name.upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(getattr(signal.Signals, text))
    except AttributeError:
        raise ClusterError(f"unknown signal {name!r}") from None


def cmd_kill(args: argparse.Namespace) -> int:
    topo = topology(args)
    _require_cluster(topo)
    sig = _signal_number(args.signal)
    width = max(len(s.name) for s in topo.services())
    with topo.lock():
        recs = []
        for s in select(topo, args.services):
            rec = topo.running(s.name)
            if rec is not None and L.send(rec, sig):
                recs.append(rec)
                _line(width, s.name, "Killed" if sig == signal.SIGKILL else f"Signalled ({signal.Signals(sig).name})")
        if sig == signal.SIGKILL:
            deadline = time.monotonic() + 10.0
            for rec in recs:
                while rec.alive() and time.monotonic() < deadline:
                    L._reap(rec.pid)
                    time.sleep(0.02)
                rec.stopped_at, rec.how = time.time(), "killed"
                topo.save_record(rec)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    topo = topology(args, may_reshape=True)
    state = topo.state_dir
    if not state.exists():
        return 0
    width = max(len(s.name) for s in topo.services())
    with topo.lock():
        _stop(topo, topo.services(), args.timeout)
        # anything recorded but outside the current shape (a cluster reshaped while down)
        names = {s.name for s in topo.services()}
        strays = [r for p in sorted(topo.run_dir.glob("*.json"))
                  if p.stem not in names and (r := topo.record(p.stem)) and r.alive()]
        L.terminate(topo, strays, args.timeout)
        for p in sorted(topo.run_dir.glob("*.json")) if topo.run_dir.exists() else []:
            _line(width, p.stem, "Removed")
        L.remove_tree(topo.run_dir)
        L.remove_tree(topo.logs_dir)
        if args.volumes:
            volumes = {v for s in topo.services() for v in s.volumes}
            for pattern in ("zookeeper-*_data", "zookeeper-*_log", "broker-*-data"):
                volumes.update(state.glob(pattern))
            for v in sorted(volumes):
                if L.remove_tree(v):
                    say(f" Volume {v.name}  Removed")
            L.remove_tree(topo.config_file)
            L.remove_tree(state / ".lock")
    if args.volumes:
        try:
            state.rmdir()  # only when nothing else lives there
        except OSError:
            pass
    return 0


# -- ps / logs --------------------------------------------------------------------------------

def human_duration(seconds: float) -> str:
    """Docker's wording (go-units HumanDuration): "3 minutes", "About an hour"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def status(rec: L.Record, now: float) -> str:
    if rec.alive():
        return f"Up {human_duration(now - rec.started_at)}"
    if rec.stopped_at is None:
        return "Exited"
    code = " (137)" if rec.how == "killed" else ""
    return f"Exited{code} {human_duration(now - rec.stopped_at)} ago"


def cmd_ps(args: argparse.Namespace) -> int:
    topo = topology(args)
    services = sorted(topo.services(), key=lambda s: s.name)
    if args.services:
        for s in services:
            say(s.name)
        return 0
    now = time.time()
    rows = [("NAME", "COMMAND", "STATUS", "PID", "PORTS")]
    for s in services:
        rec = topo.record(s.name)
        if rec is None:
            continue
        alive = rec.alive()
        rows.append((s.name, f'"{s.short_command}"', status(rec, now),
                     str(rec.pid) if alive else "-", s.ports_label if alive else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        say("   ".join(c.ljust(w) for c, w in zip(r, widths)) + "   " + r[-1])
    return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail_lines(path: Path, n: int | None) -> tuple[list[bytes], int]:
    try:
        data = path.read_bytes()
    except OSError:
        return [], 0
    lines = data.splitlines()
    return (lines if n is None else lines[-n:] if n else []), len(data)


def follow(topo: Topology, names: list[str], offsets: dict[str, int], prefix: bool,
           until_all_exit: bool = True) -> None:
    """Print what the logs gain from `offsets` on, until Ctrl-C (or, with `until_all_exit`,
    until none of the services runs any more)."""
    width = max(len(n) for n in names)
    files: dict[str, object] = {}
    partial = {n: b"" for n in names}
    out = sys.stdout.buffer
    try:
        while True:
            got = False
            for n in names:
                f = files.get(n)
                if f is None:
                    try:
                        f = files[n] = open(topo.log_path(n), "rb")
                        f.seek(offsets.get(n, 0))
                    except OSError:
                        continue
                if _size(topo.log_path(n)) < f.tell():  # truncated or replaced
                    f.close()
                    del files[n]
                    offsets[n] = 0
                    continue
                chunk = f.read(65536)
                if not chunk:
                    continue
                got = True
                lines = (partial[n] + chunk).split(b"\n")
                partial[n] = lines.pop()
                for line in lines:
                    out.write((f"{n:<{width}}  | ".encode() if prefix else b"") + line + b"\n")
                out.flush()
            if not got:
                _reap_children()
                if until_all_exit and not any(topo.running(n) for n in names):
                    return
                time.sleep(0.1)
    finally:
        for f in files.values():
            f.close()


def _reap_children() -> None:
    """An attached `up` is the parent of its services: collect the ones that ended."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def cmd_logs(args: argparse.Namespace) -> int:
    topo = topology(args)
    services = select(topo, args.services)
    names = [s.name for s in services]
    if args.tail == "all":
        n = None
    else:
        try:
            n = int(args.tail)
        except ValueError:
            raise ClusterError(f"--tail expects a number or 'all', got {args.tail!r}") from None
        n = None if n < 0 else n
    prefix = not args.no_log_prefix and len(names) > 1
    width = max(len(x) for x in names)
    offsets = {}
    out = sys.stdout.buffer
    for name in names:
        lines, offsets[name] = _tail_lines(topo.log_path(name), n)
        for line in lines:
            out.write((f"{name:<{width}}  | ".encode() if prefix else b"") + line + b"\n")
    out.flush()
    if args.follow:
        try:
            follow(topo, names, offsets, prefix)
        except KeyboardInterrupt:
            pass
    return 0


VERBS = {"up": cmd_up, "ps": cmd_ps, "logs": cmd_logs, "stop": cmd_stop, "start": cmd_start,
         "restart": cmd_restart, "kill": cmd_kill, "down": cmd_down}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage and the mistake
        return e.code if isinstance(e.code, int) else 2
    try:
        return VERBS[args.verb](args)
    except ClusterError as e:
        print(f"{PROG}: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; services already started keep running (`{PROG} down` stops them)",
              file=sys.stderr, flush=True)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        if os.environ.get("JOSEF_DEBUG"):
            raise
        print(f"{PROG}: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
