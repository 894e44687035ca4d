"""Start `josef serve` on a fresh data dir and time the first ApiVersions answer.

    .venv/bin/python bench/startup.py [--runs 5]
"""
from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOSEF = Path(sys.executable).parent / "josef"
REQUEST = struct.pack(">hhih", 18, 0, 1, 5) + b"bench"  # ApiVersions v0


def first_answer_s(port: int, data_dir: str) -> float:
    started = time.monotonic()
    proc = subprocess.Popen([str(JOSEF), "serve", "--port", str(port), "--rest-port", "0", "--data-dir", data_dir],
                            stderr=subprocess.DEVNULL)
    try:
        deadline = started + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(struct.pack(">i", len(REQUEST)) + REQUEST)
                    if s.recv(4):
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.002)
        raise SystemExit("no answer within 10 s")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, default=29811)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        data_dir = tempfile.mkdtemp(prefix="josef-startup-")
        try:
            times.append(first_answer_s(args.port, data_dir))
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(f"start to first answer: min {min(times):.3f}s median {statistics.median(times):.3f}s "
          f"max {max(times):.3f}s over {args.runs} runs")


if __name__ == "__main__":
    main()
