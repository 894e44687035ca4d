"""Random command lines for every Kafka tool josef ships: each must end with an exit status and,
when it fails, a message, never a traceback, a signal or a hang. The flags come from each
tool's own `--help`, so a flag added later is fuzzed too. `JOSEF_CLI_FUZZ_SEED` replays a run.
"""
from __future__ import annotations

import os
import random
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import BIN, BrokerProcess
from tests.integration.test_clients import create_topic

pytestmark = pytest.mark.timeout(300)

TOOLS = ["kafka-topics.sh", "kafka-console-producer.sh", "kafka-console-consumer.sh", "kafka-get-offsets.sh",
         "kafka-broker-api-versions.sh", "kafka-dump-log.sh", "kafka-consumer-groups.sh", "kafka-configs.sh",
         "kafka-delete-records.sh", "kafka-reassign-partitions.sh", "kafka-leader-election.sh"]
RUNS_PER_TOOL = 9
FLAG = re.compile(r"(--[a-z][\w.-]*)((?: [A-Z][\w:,.=\[\]/-]*)?)")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = BrokerProcess(data_dir=tmp_path_factory.mktemp("cli-fuzz") / "data").start()
    yield b
    b.kill()


def flags_of(tool: str) -> list[tuple[str, bool]]:
    """(flag, takes a value) from the tool's --help."""
    out = subprocess.run([str(BIN / tool), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    found = {}
    for flag, metavar in FLAG.findall(out.stdout):
        found[flag] = found.get(flag, False) or bool(metavar.strip())
    found.pop("--help", None)
    assert found, out.stdout
    return sorted(found.items())


def test_every_tool_fails_with_a_message(broker, tmp_path):
    seed = int(os.environ.get("JOSEF_CLI_FUZZ_SEED", random.randrange(2 ** 32)))
    rng = random.Random(seed)
    topic = f"clifuzz-{rng.randrange(10 ** 6)}"
    create_topic(broker.bootstrap, topic, partitions=2)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(bytes(rng.randrange(256) for _ in range(300)))
    props = tmp_path / "props.properties"
    props.write_text("acks=banana\n=\nno equals sign\nbootstrap.servers=127.0.0.1:1\n")
    plan = tmp_path / "plan.json"
    plan.write_text('{"version":1,"partitions":[{"topic":"%s","partition":7,"replicas":[9,9]}]}' % topic)
    values = [broker.bootstrap, broker.bootstrap, "127.0.0.1:1", topic, topic, "0", "-1", "99999999999999999999",
              "abc", "", " ", "x=y", "a:b,c", "é", "%s", ",,,", "[", "{}", str(garbage), str(props), str(plan),
              "/nonexistent/file", "retention.ms=1", "--", "latest", "earliest", "1:2,3"]

    def command(tool: str, flags) -> list[str]:
        argv = [str(BIN / tool)]
        if rng.random() < 0.8:
            argv += ["--bootstrap-server", rng.choice(values[:3])]
        for flag, takes_value in rng.sample(flags, min(len(flags), rng.randrange(1, 5))):
            argv.append(flag)
            if takes_value or rng.random() < 0.1:
                argv.append(rng.choice(values))
        if tool == "kafka-console-consumer.sh":
            argv += ["--timeout-ms", "1500"]  # it would otherwise wait for records, as Kafka's does
        return argv

    commands = [command(tool, flags) for tool in TOOLS for flags in [flags_of(tool)] for _ in range(RUNS_PER_TOOL)]

    def run(argv: list[str]):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                                 errors="replace")
        except subprocess.TimeoutExpired:
            return argv, "hung for 60 s"
        if out.returncode < 0:
            return argv, f"killed by signal {-out.returncode}: {out.stderr[-500:]}"
        if "Traceback" in out.stderr or "Traceback" in out.stdout:
            return argv, out.stderr[-1500:]
        if out.returncode != 0 and not out.stderr.strip():
            return argv, f"exit {out.returncode} without a message"
        return None

    with ThreadPoolExecutor(2) as pool:
        failures = [f for f in pool.map(run, commands) if f is not None]
    assert not failures, f"seed {seed}: {failures[:3]}"
    assert broker.proc.poll() is None
