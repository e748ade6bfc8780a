"""The deployment recipes of deploy/ without running them: systemd units, container image, compose file, nginx.

Each file is read by a real parser (the Dockerfile by BuildKit's, nginx's by crossplane, YAML by PyYAML) and its
references are checked: settings are flags the command knows (parsed by ticker's own command line), files it
names exist. `systemd-analyze verify` and `promtool check config` run in tests/e2e/test_deploy.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from pathlib import Path
from typing import Any

import crossplane
import dockerfile
import pytest
import yaml
from crossplane.analyzer import DIRECTIVES

from ticker.cli.feed import PublisherConfig
from ticker.cli.main import parse
from ticker.options import ENV_PREFIX, nested_help, option_of
from ticker.server.config import Config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = {
    "serve": DEPLOY / "systemd" / "ticker-serve.service",
    "feed": DEPLOY / "systemd" / "ticker-feed.service",
}
CONFIGS: dict[str, type[Config] | type[PublisherConfig]] = {"serve": Config, "feed": PublisherConfig}
# Secrets are read from these variables (never flags): ticker/broker/options.py, ticker/auth, feeds/.
SECRETS = {"TICKER_REDIS_PASSWORD", "TICKER_JWT_SECRET", "TICKER_METRICS_TOKEN", "FINNHUB_TOKEN",
           "POLYGON_API_KEY", "ALPACA_KEY_ID", "ALPACA_SECRET_KEY"}  # fmt: skip
IMAGE_ENV = {"TICKER_HOST": "0.0.0.0", "TICKER_PORT": "8888"}  # the Dockerfile's ENV (checked below)
# What tests/e2e/test_packaging.py builds (and installs and runs) the wheel from.
WHEEL_SOURCES = {"setup.cfg", "pyproject.toml", "README.md", "ticker", "feeds", "web"}


def env_names(cls: type) -> set[str]:
    """Every ``TICKER_*`` variable the options dataclass ``cls`` (with its nested ones) reads."""
    hints = typing.get_type_hints(cls)
    names: set[str] = set()
    for f in dataclasses.fields(cls):
        if nested_help(f) is not None:
            names |= env_names(hints[f.name])
        elif (opt := option_of(f)) is not None and opt.env:
            names.add(ENV_PREFIX + opt.env)
    return names


def parsed(
    command: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, args: list[str] | None = None
) -> Any:
    """``ticker COMMAND [ARGS]`` configured by ``env``, through the real command line (exits 2 on a bad value)."""
    unknown = {k for k in env if k.startswith(ENV_PREFIX)} - env_names(CONFIGS[command]) - SECRETS
    assert not unknown, f"{command} has no such setting: {unknown}"
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return parse([command, *(args or [])])


# --- systemd


def unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]} (keys repeat), continuation lines joined."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in path.read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line):
            current = sections.setdefault(m.group(1), [])
        else:
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not key=value: {line!r}"
            current.append((key.strip(), value.strip()))
    return sections


@pytest.mark.parametrize("command", ["serve", "feed"])
def test_systemd_unit_is_hardened_and_configures_a_valid_command(
    command: str, monkeypatch: pytest.MonkeyPatch
):
    service = unit(UNITS[command])["Service"]
    one = dict(service)
    assert one["ExecStart"] == f"/opt/ticker/bin/ticker {command}"
    assert one["Restart"] == "always" and one["KillMode"] == "mixed" and int(one["TimeoutStopSec"]) >= 10
    assert (
        one["DynamicUser"] == "yes" and one["NoNewPrivileges"] == "yes" and one["ProtectSystem"] == "strict"
    )
    assert int(one["LimitNOFILE"]) >= 65536 and one["CapabilityBoundingSet"] == ""
    assert one["EnvironmentFile"] == "/etc/ticker/ticker.env"
    env = dict(kv.split("=", 1) for key, value in service if key == "Environment" for kv in value.split())
    assert not env.keys() & SECRETS, "secrets go in the EnvironmentFile"
    config = parsed(command, env, monkeypatch)
    assert isinstance(config, CONFIGS[command])
    assert config.broker == "redis://127.0.0.1:6379/0" and config.metrics_port == 9100
    assert config.process.log_format == "json"


def test_environment_file_example_names_only_secrets_and_sets_none() -> None:
    lines = [ln for ln in (DEPLOY / "systemd" / "ticker.env.example").read_text().splitlines() if ln.strip()]
    assert all(ln.startswith("#") for ln in lines)
    named = {m.group(1) for ln in lines if (m := re.fullmatch(r"#([A-Z_]+)=", ln))}
    assert named == SECRETS


# --- container image


def test_dockerfile_builds_the_wheel_and_runs_it_unprivileged_with_a_healthcheck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = DEPLOY / "container" / "Dockerfile"
    cmds = dockerfile.parse_file(str(path))
    stages = [i for i, c in enumerate(cmds) if c.cmd == "FROM"]
    assert len(stages) == 2 and all(
        re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim", cmds[i].value[0]) for i in stages
    )
    build, final = cmds[stages[0] : stages[1]], cmds[stages[1] :]
    copied = {src for c in build if c.cmd == "COPY" for src in c.value[:-1]}
    assert copied == WHEEL_SOURCES and all((ROOT / s).exists() for s in copied)
    ignore = (path.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore.count("*") == 1 and {ln[1:] for ln in ignore if ln.startswith("!")} == copied
    assert any(c.cmd == "RUN" and c.value[0].startswith("pip wheel") for c in build)
    run = " ".join(c.value[0] for c in final if c.cmd == "RUN")
    assert 'pip install --no-cache-dir "$(ls /wheels/ticker_push-*.whl)[server]"' in run
    (user,) = [c.value[0] for c in final if c.cmd == "USER"]
    assert user.split(":")[0] not in ("0", "root") and "--uid " + user.split(":")[0] in run
    (check,) = [c for c in final if c.cmd == "HEALTHCHECK"]
    assert check.json and check.value[:3] == ("CMD", "python", "-c") and "/healthz" in check.value[3]
    compile(check.value[3], "HEALTHCHECK", "exec")  # the probe is valid Python
    assert [c.value for c in final if c.cmd in ("ENTRYPOINT", "CMD")] == [("ticker",), ("serve",)]
    (env_cmd,) = [c for c in final if c.cmd == "ENV"]
    env = dict(zip(env_cmd.value[::2], env_cmd.value[1::2], strict=True))
    assert {k: v for k, v in env.items() if k in IMAGE_ENV} == IMAGE_ENV
    config = parsed("serve", {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}, monkeypatch)
    assert config.host == "0.0.0.0" and config.port == 8888


# --- compose


def test_compose_wires_publisher_redis_two_edges_and_prometheus(monkeypatch: pytest.MonkeyPatch) -> None:
    base = DEPLOY / "container"
    doc = yaml.safe_load((base / "compose.yaml").read_text())  # merge keys (<<) resolved
    services = doc["services"]
    assert set(services) == {"redis", "publisher", "edge1", "edge2", "prometheus"}
    for name, svc in services.items():
        for dep in svc.get("depends_on", []):
            assert dep in services, (name, dep)
        for volume in svc.get("volumes", []):
            assert (base / volume.split(":")[0]).is_file(), (name, volume)
    targets = []
    for name in ("publisher", "edge1", "edge2"):
        svc = services[name]
        assert (base / svc["build"]["context"]).resolve() == ROOT
        assert (ROOT / svc["build"]["dockerfile"]).is_file()
        command, *args = svc["command"]
        image = {k: v for k, v in IMAGE_ENV.items() if k in env_names(CONFIGS[command])}
        config = parsed(command, {**image, **svc["environment"]}, monkeypatch, args)
        assert config.broker == "redis://redis:6379/0"
        targets.append(f"{name}:{config.metrics_port}")
        if command == "serve":
            (port,) = svc["ports"]
            assert port.endswith(f":{config.port}") and port.startswith("127.0.0.1:")
            assert f"127.0.0.1:{port.split(':')[1]}" in config.allowed_hosts
    prom = yaml.safe_load((base / "prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    assert job["job_name"] == "ticker" and job["static_configs"][0]["targets"] == targets
    assert prom["rule_files"] == ["alerts.yml"]
    assert "/etc/prometheus/alerts.yml" in " ".join(services["prometheus"]["volumes"])


# --- nginx


def _directives(block: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d for st in block for d in [st, *_directives(st.get("block", []) if st["directive"] != "map" else [])]
    ]


def test_nginx_example_parses_and_upgrades_websockets_and_streams_sse(tmp_path: Path) -> None:
    conf = DEPLOY / "nginx" / "ticker.conf"
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"events {{}}\nhttp {{\n    include {conf};\n}}\n"
    )  # the example sits in the http context
    result = crossplane.parse(str(main), check_ctx=True, check_args=True)
    assert result["status"] == "ok", result["errors"]
    (parsed_conf,) = [c["parsed"] for c in result["config"] if c["file"] == str(conf)]
    every = _directives(parsed_conf)
    assert {d["directive"] for d in every} <= set(DIRECTIVES)  # no typo (map entries are not directives)
    servers = [d for d in every if d["directive"] == "server" and "block" in d]  # not the upstream's servers
    (server,) = [d for d in servers if d["block"][0]["args"] == ["443", "ssl"]]
    headers = {d["args"][0]: d["args"][1] for d in server["block"] if d["directive"] == "proxy_set_header"}
    assert headers["Upgrade"] == "$http_upgrade" and headers["Connection"] == "$connection_upgrade"
    assert headers["Host"] == "$host"
    locations = {d["args"][-1]: d["block"] for d in server["block"] if d["directive"] == "location"}
    assert set(locations) == {"/ws", "/sse", "/metrics", "/"}
    for path in ("/ws", "/sse"):
        opts = {d["directive"]: d["args"] for d in locations[path]}
        assert (
            "proxy_set_header" not in opts
        )  # it would drop the server's headers (nginx does not merge them)
        assert opts["proxy_buffering"] == ["off"] and opts["proxy_pass"] == ["http://ticker"]
        assert int(opts["proxy_read_timeout"][0].rstrip("s")) > 40  # ping interval + ping timeout (20 + 20 s)
    assert {"directive": "return", "args": ["404"]}.items() <= locations["/metrics"][0].items()
