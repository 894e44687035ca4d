"""kbench with a replication factor: the harness's kbench.py, its topics created with RF N.

    /tmp/benchvenv/bin/python bench/kbench_rf.py --replication-factor 3 [--kbench PATH] KBENCH-ARGS...

kbench.py creates every topic with replication_factor=1. This wrapper imports kbench.py as a
module (default /work/shared/bench/kbench.py, or $KBENCH), replaces the NewTopic it uses with
one that turns replication_factor=1 into N, and runs kbench's own main() with the remaining
arguments: same phases, same output, nothing of kbench copied. The JSON on stdout gains
"replication_factor": N (in "params").
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys

DEFAULT_KBENCH = os.environ.get("KBENCH", "/work/shared/bench/kbench.py")


def load_kbench(path: str):
    spec = importlib.util.spec_from_file_location("kbench", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["kbench"] = module
    spec.loader.exec_module(module)
    return module


def with_replication_factor(kbench, rf: int) -> None:
    original = kbench.NewTopic

    def new_topic(*args, **kwargs):
        if kwargs.get("replication_factor") == 1:
            kwargs["replication_factor"] = rf
        return original(*args, **kwargs)

    kbench.NewTopic = new_topic


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--replication-factor", type=int, default=3)
    ap.add_argument("--kbench", default=DEFAULT_KBENCH)
    ours, rest = ap.parse_known_args(argv)
    if ours.replication_factor < 1:
        ap.error("--replication-factor must be >= 1")
    kbench = load_kbench(ours.kbench)
    with_replication_factor(kbench, ours.replication_factor)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = kbench.main(rest)
    text = out.getvalue()
    try:  # note the factor in kbench's JSON (it prints exactly one object)
        doc = json.loads(text)
        doc.setdefault("params", {})["replication_factor"] = ours.replication_factor
        text = json.dumps(doc, indent=1) + "\n"
    except ValueError:
        pass
    sys.stdout.write(text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
