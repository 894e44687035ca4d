"""docker/docker-compose.yaml is the seed's topology, every variable in it means something to
josef, and `josef cluster` builds the same topology for local processes (no sockets here)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from josef.cli import cluster as cli
from josef.cluster.launcher import Ports, Shape, Topology
from josef.config import BROKER_CONFIGS, env_overrides
from josef.rest import settings as rest_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "docker-compose.yaml"

# Variables of the seed that josef accepts and ignores, with the reason.
IGNORED_BROKER_KEYS = {
    # a ZooKeeper-server setting the seed passes to cp-kafka; meaningless to a broker (Kafka
    # itself logs it as an unknown config)
    "snapshot.trust.empty",
}


# -- a YAML reader for the block subset compose files use (PyYAML is not a dependency) ------

def _scalar(text: str):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        body = text[1:-1]
        return body.replace("''", "'") if text[0] == "'" else bytes(body, "utf-8").decode("unicode_escape")
    if text in ("true", "True"):
        return True
    if text in ("false", "False"):
        return False
    if text in ("", "~", "null"):
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def load_yaml(text: str):
    lines = []
    for raw in text.splitlines():
        if raw.strip() == "---":
            continue
        line = _strip_comment(raw)
        if line.strip():
            assert "\t" not in line[: len(line) - len(line.lstrip())], f"tab indentation: {raw!r}"
            lines.append((len(line) - len(line.lstrip()), line.strip()))

    def block(i: int, indent: int):
        if lines[i][1].startswith("- "):
            out = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                out.append(_scalar(lines[i][1][2:]))
                i += 1
            return out, i
        out = {}
        while i < len(lines) and lines[i][0] == indent:
            key, sep, rest = lines[i][1].partition(":")
            assert sep and (not rest or rest[0] == " "), f"not a mapping entry: {lines[i][1]!r}"
            key = _scalar(key)
            assert key not in out, f"duplicate key {key!r}"
            i += 1
            if rest.strip():
                out[key] = _scalar(rest)
            elif i < len(lines) and (lines[i][0] > indent or
                                     (lines[i][0] == indent and lines[i][1].startswith("- "))):
                out[key], i = block(i, lines[i][0])
            else:
                out[key] = None
        return out, i

    doc, end = block(0, lines[0][0])
    assert end == len(lines), f"unparsed from line {lines[end][1]!r}"
    return doc


def test_reader_matches_pyyaml_when_present():
    yaml = pytest.importorskip("yaml")
    assert load_yaml(COMPOSE.read_text()) == yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE.read_text())


def _env(service: dict) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in service["environment"].items()}


BROKERS = ["broker-1", "broker-2", "broker-3"]
ZOOKEEPERS = ["zookeeper-1", "zookeeper-2", "zookeeper-3"]


# -- the compose file -----------------------------------------------------------------------

def test_the_seeds_services(compose):
    services = compose["services"]
    assert list(services) == [*ZOOKEEPERS, *BROKERS, "rest-proxy"]
    for name, svc in services.items():
        assert svc["container_name"] == name and svc["hostname"] == name


def test_zookeepers_are_zookeeper_images_forming_one_ensemble(compose):
    for i, name in enumerate(ZOOKEEPERS, 1):
        svc = compose["services"][name]
        assert "zookeeper" in svc["image"]
        assert svc["volumes"] == [f"./{name}_data:/var/lib/zookeeper/data", f"./{name}_log:/var/lib/zookeeper/log"]
        env = svc["environment"]
        assert env["ZOOKEEPER_CLIENT_PORT"] == 2181 and env["ZOO_MY_ID"] == i == env["ZOOKEEPER_SERVER_ID"]
        assert env["ZOOKEEPER_SERVERS"].split(";") == [f"{z}:2888:3888" for z in ZOOKEEPERS]
        assert "ports" not in svc


def test_josef_services_use_the_josef_image(compose):
    for name, command in [*((b, "josef broker") for b in BROKERS), ("rest-proxy", "josef rest-proxy")]:
        svc = compose["services"][name]
        assert svc["command"] == command
        assert svc["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        assert svc["image"].split(":")[0] == "josef"
    assert (ROOT / "docker" / "Dockerfile").exists()


def test_ports_and_volumes(compose):
    services = compose["services"]
    for i, name in enumerate(BROKERS):
        svc = services[name]
        assert svc["ports"] == [f"{9092 + i}:{9092 + i}", f"{29092 + i}:{29092 + i}"]
        assert svc["volumes"] == [f"./{name}-data:/var/lib/kafka/data"]
        assert svc["depends_on"] == [*ZOOKEEPERS, *BROKERS[:i]]
    assert services["rest-proxy"]["ports"] == ["8082:8082"]
    assert services["rest-proxy"]["depends_on"] == [*ZOOKEEPERS, *BROKERS]


def test_every_broker_variable_is_a_broker_config(compose):
    for i, name in enumerate(BROKERS):
        env = _env(compose["services"][name])
        assert all(k.startswith("KAFKA_") for k in env)
        keys = env_overrides(env)
        assert len(keys) == len(env)
        unknown = sorted(k for k in keys if k not in BROKER_CONFIGS and k not in IGNORED_BROKER_KEYS)
        assert not unknown, f"{name}: variables that map to no broker config: {unknown}"
        assert keys["broker.id"] == str(i + 1)
        assert keys["zookeeper.connect"].split(",") == [f"{z}:2181" for z in ZOOKEEPERS]
        assert keys["advertised.listeners"] == f"HOST://localhost:{9092 + i},INTERNAL://{name}:{29092 + i}"
        assert keys["listeners"] == f"HOST://0.0.0.0:{9092 + i},INTERNAL://0.0.0.0:{29092 + i}"
        assert keys["log.dirs"] == "/var/lib/kafka/data"
        protocols = dict(item.split(":") for item in keys["listener.security.protocol.map"].split(","))
        assert protocols == {"HOST": "PLAINTEXT", "INTERNAL": "PLAINTEXT"}
        assert keys["inter.broker.listener.name"] in protocols


def test_every_rest_variable_is_a_rest_setting(compose):
    env = _env(compose["services"]["rest-proxy"])
    assert all(k.startswith("KAFKA_REST_") for k in env)
    keys = {rest_settings.env_to_key(k) for k in env}
    assert keys <= set(rest_settings.DEFAULTS), keys - set(rest_settings.DEFAULTS)
    settings = rest_settings.RestSettings.load(environ=env)
    assert settings.bootstrap_servers == "broker-1:29092,broker-2:29093,broker-3:29094"
    assert [(lst.host, lst.port) for lst in settings.listeners] == [("0.0.0.0", 8082)]
    assert settings.host_name == "rest-proxy"


# -- `josef cluster`: the same topology as local processes ----------------------------------

def test_cluster_topology_matches_the_compose_file(compose, tmp_path):
    topo = Topology(tmp_path, Shape())
    services = {s.name: s for s in topo.services()}
    assert list(services) == list(compose["services"])
    for i, name in enumerate(BROKERS, 1):
        local, dockerised = services[name].env, _env(compose["services"][name])
        assert set(dockerised) - set(local) == {"KAFKA_SNAPSHOT_TRUST_EMPTY"}
        assert local["KAFKA_BROKER_ID"] == str(i)
        assert local["KAFKA_ADVERTISED_LISTENERS"] == f"HOST://localhost:{9091 + i},INTERNAL://127.0.0.1:{29091 + i}"
        assert local["KAFKA_LISTENERS"] == f"HOST://127.0.0.1:{9091 + i},INTERNAL://127.0.0.1:{29091 + i}"
        assert local["KAFKA_ZOOKEEPER_CONNECT"] == "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183"
        assert local["KAFKA_LOG_DIRS"] == str(tmp_path / f"broker-{i}-data")
        assert local["KAFKA_ZOOKEEPER_SESSION_TIMEOUT_MS"] == "6000"
        assert "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR" not in local
        for key in (k for k in env_overrides(local) if k not in IGNORED_BROKER_KEYS):
            assert key in BROKER_CONFIGS
        assert services[name].command[-1] == "broker" and services[name].listen == [9091 + i, 29091 + i]
    rest = services["rest-proxy"]
    assert rest.env == {"KAFKA_REST_BOOTSTRAP_SERVERS": "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094",
                        "KAFKA_REST_LISTENERS": "http://127.0.0.1:8082"}
    assert rest.command[-1] == "rest-proxy"
    assert rest_settings.RestSettings.load(environ=rest.env).listeners[0].port == 8082


def test_cluster_zookeeper_ensemble(tmp_path):
    topo = Topology(tmp_path, Shape())
    zks = [s for s in topo.services() if s.kind == "zookeeper"]
    assert [s.listen for s in zks] == [[2181, 2888, 3888], [2182, 2889, 3889], [2183, 2890, 3890]]
    zk = zks[1].zookeeper
    assert zk.my_id == 2 and zk.tick_time_ms == 500
    assert [(p.my_id, p.quorum_port, p.election_port) for p in zk.peers] == [(1, 2888, 3888), (2, 2889, 3889),
                                                                            (3, 2890, 3890)]
    zk.write_config()
    cfg = zk.config_path.read_text()
    assert f"dataDir={tmp_path / 'zookeeper-2_data'}" in cfg and f"dataLogDir={tmp_path / 'zookeeper-2_log'}" in cfg
    assert (tmp_path / "zookeeper-2_data" / "myid").read_text().strip() == "2"


def test_cluster_other_shapes_and_ports(tmp_path):
    shape = Shape(1, 1, Ports(kafka=40000, internal=40100, zookeeper=40200, quorum=40300, election=40400,
                              rest=40500))
    topo = Topology(tmp_path, shape)
    services = {s.name: s for s in topo.services()}
    assert list(services) == ["zookeeper-1", "broker-1", "rest-proxy"]
    assert services["zookeeper-1"].zookeeper.peers == [] and services["zookeeper-1"].listen == [40200]
    env = services["broker-1"].env
    assert env["KAFKA_ZOOKEEPER_CONNECT"] == "127.0.0.1:40200"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert services["rest-proxy"].env["KAFKA_REST_LISTENERS"] == "http://127.0.0.1:40500"
    assert [s.name for s in Topology(tmp_path, Shape(0, 3)).services()] == ZOOKEEPERS
    assert Shape.from_json(shape.to_json()) == shape


def test_up_brings_dependencies_start_does_not(tmp_path):
    topo = Topology(tmp_path, Shape())
    assert [s.name for s in cli.select(topo, ["broker-2"], with_deps=True)] == [*ZOOKEEPERS, "broker-2"]
    assert [s.name for s in cli.select(topo, ["rest-proxy"], with_deps=True)] == [*ZOOKEEPERS, *BROKERS,
                                                                                  "rest-proxy"]
    assert [s.name for s in cli.select(topo, ["zookeeper-2"], with_deps=True)] == ZOOKEEPERS
    assert [s.name for s in cli.select(topo, ["broker-2"])] == ["broker-2"]
    with pytest.raises(cli.ClusterError, match="no such service: broker-9"):
        cli.select(topo, ["broker-9"])


@pytest.mark.parametrize("seconds,text", [(0.5, "Less than a second"), (1, "1 second"), (42, "42 seconds"),
                                          (61, "About a minute"), (180, "3 minutes"), (3600, "About an hour"),
                                          (3 * 3600, "3 hours"), (3 * 86400, "3 days")])
def test_docker_durations(seconds, text):
    assert cli.human_duration(seconds) == text


def test_cli_bad_input_is_one_message(tmp_path, capsys):
    state = ["--dir", str(tmp_path / "c")]
    assert cli.main([*state, "frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert cli.main([*state, "logs", "broker-7"]) == 1
    assert "no such service: broker-7" in capsys.readouterr().err
    assert cli.main([*state, "--zookeepers", "0", "ps"]) == 1
    assert "--zookeepers must be between" in capsys.readouterr().err
    assert cli.main([*state, "start"]) == 1
    assert "no cluster in" in capsys.readouterr().err
    assert cli.main([*state, "kill", "-s", "SIGNOPE"]) == 1
    assert cli.main([*state, "ps"]) == 0
    assert capsys.readouterr().out.split() == ["NAME", "COMMAND", "STATUS", "PID", "PORTS"]
    assert cli.main([*state, "down", "-v"]) == 0
    assert not (tmp_path / "c").exists()


def test_cli_remembers_the_shape(tmp_path, capsys):
    state = tmp_path / "c"
    topo = Topology(state, Shape(2, 1, Ports(kafka=40000)))
    cli.save_shape(topo)
    assert cli.main(["--dir", str(state), "ps", "--services"]) == 0
    assert capsys.readouterr().out.split() == ["broker-1", "broker-2", "rest-proxy", "zookeeper-1"]
    assert cli.main(["ps", "--dir", str(state), "--brokers", "3"]) == 1
    assert "was set up as --brokers 2 --zookeepers 1 --kafka-port 40000" in capsys.readouterr().err
