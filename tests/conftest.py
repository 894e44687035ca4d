"""Shared fixtures: real broker processes on free ports, with a deadline on every wait."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TANSU = os.environ.get("JOSEF_TEST_TANSU", "/tmp/tansu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class BrokerControl:
    """Start, watch, stop and kill a broker process in its own session; the class using it has
    `proc`, `port` (where it answers once up), `log_path` and `label`."""

    STOP_TIMEOUT = 10.0

    def launch(self, args: list[str], env: dict | None = None, timeout: float = 10.0):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            wait_for(lambda: self.proc.poll() is not None or port_open(self.port), timeout, what="broker port")
        except AssertionError:
            self.kill()
            raise
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.label} exited with {self.proc.returncode}:\n{self.log()}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM and wait: the exit status of a clean shutdown."""
        timeout = self.STOP_TIMEOUT if timeout is None else timeout
        if not self.running:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.label} did not stop within {timeout}s after SIGTERM")

    def kill(self) -> None:
        if self.running:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class BrokerProcess(BrokerControl):
    """A `josef serve` process (or Tansu when JOSEF_TEST_BROKER=tansu) on a free port."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    label = "broker"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if os.environ.get("JOSEF_TEST_BROKER") == "tansu":
            url = f"tcp://127.0.0.1:{self.port}"
            return [TANSU, "broker", "--listener-url", url, "--advertised-listener-url", url,
                    "--storage-engine", "memory://tansu/"]
        return [str(BIN / "josef"), "serve", "--port", str(self.port), "--rest-port", "0",
                "--data-dir", str(self.data_dir), *self.extra]

    def start(self, timeout: float = 10.0) -> "BrokerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / f"broker-{self.port}.log"
        return self.launch(self.command(), timeout=timeout)

    def restart(self) -> "BrokerProcess":
        self.stop()
        return self.start()


@pytest.fixture
def broker_factory(tmp_path):
    started: list[BrokerProcess] = []

    def make(*extra: str, data_dir: Path | None = None) -> BrokerProcess:
        b = BrokerProcess(data_dir=data_dir or tmp_path / f"data{len(started)}", extra=list(extra))
        started.append(b)
        return b.start()

    yield make
    for b in started:
        b.kill()


@pytest.fixture
def broker(broker_factory) -> BrokerProcess:
    """A fresh single broker with its own data directory."""
    return broker_factory()
