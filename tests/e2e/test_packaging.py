"""The distribution as it is installed: the wheel's name, files and requirements; a client-only and a server venv.

The wheel is built from a copy of the tree (a stale build/ cannot leak into it) without the network
(``--no-build-isolation``: setuptools and wheel come from the dev extra). Each fresh venv gets the wheel
and nothing but what the base requirements (and the ``server`` extra) pull in, from wheels repacked from
this environment (tests/support/wheelhouse.py), so no package index is asked either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import wheelhouse
from tests.support.serverproc import ServerProcess, scrape
from tests.support.timing import timeout
from ticker.cli.extras import DISTRIBUTION, SERVER_MODULES

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "ticker", "feeds", "web")
HINT = f"pip install '{DISTRIBUTION}[server]'"

# pip reads only what each call says: no config file, no PIP_* variable (find-links, constraints, index).
PIP_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
# The venv's Python sees nothing of this checkout or this environment.
RUN_ENV = {k: v for k, v in PIP_ENV.items() if not k.startswith("PYTHON")}


def run(argv: list[str | Path], *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout(120),
    )


def pip(*args: str | Path, cwd: Path) -> None:
    done = run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], env=PIP_ENV, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", tmp / "dist", src, cwd=tmp)
    (built,) = (tmp / "dist").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def metadata(wheel: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(wheel) as whl:
        (name,) = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
        msg = Parser().parsestr(whl.read(name).decode())
    return {key: msg.get_all(key) or [] for key in ("Name", "Requires-Dist", "Provides-Extra")}


def install(wheel: Path, requires: list[str], extras: tuple[str, ...], tmp: Path) -> Path:
    """A fresh venv holding ``wheel`` with ``extras`` and only what they need, from wheels repacked here."""
    house = tmp / "wheelhouse"
    house.mkdir()
    for dist in wheelhouse.closure(requires, extras).values():
        wheelhouse.repack(dist, house)
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    target = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    pip(
        "--python",
        env_dir / "bin" / "python",
        "install",
        "-q",
        "--no-index",
        "--find-links",
        house,
        target,
        cwd=tmp,
    )
    return env_dir


@pytest.fixture(scope="module")
def client_venv(
    wheel: Path, metadata: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return install(wheel, metadata["Requires-Dist"], (), tmp_path_factory.mktemp("client"))


@pytest.fixture(scope="module")
def server_venv(
    wheel: Path, metadata: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return install(wheel, metadata["Requires-Dist"], ("server",), tmp_path_factory.mktemp("server"))


def test_the_wheel_is_named_typed_and_complete(wheel: Path, metadata: dict[str, list[str]]) -> None:
    assert metadata["Name"] == [DISTRIBUTION]
    assert wheel.name.startswith(DISTRIBUTION.replace("-", "_") + "-")
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "ticker = ticker.cli:main" in whl.read(entry_points).decode()
    assert {"ticker/py.typed", "feeds/py.typed", "ticker/client/__init__.py", "ticker/server/run.py"} <= names
    assert "feeds/recording/sample.jsonl.gz" in names
    web = ROOT / "web"  # its files and web/vendor/'s (the chart library)
    assert {p.relative_to(web).as_posix() for p in web.rglob("*") if p.is_file()} == {
        n.split(".data/data/share/ticker/web/", 1)[1] for n in names if ".data/data/share/ticker/web/" in n
    }
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]


def test_the_base_install_is_the_clients_and_the_server_is_an_extra(metadata: dict[str, list[str]]) -> None:
    base = {canonicalize_name(r.name) for r in wheelhouse.requirements(metadata["Requires-Dist"])}
    assert base == {"aiohttp", "orjson"}
    extra = {
        canonicalize_name(req.name)
        for req in map(Requirement, metadata["Requires-Dist"])
        if req.marker is not None and 'extra == "server"' in str(req.marker)
    }
    assert extra == {"tornado", "prometheus-client", "redis", "hiredis", "rich", "uvloop", "pyjwt"}
    distribution = {"jwt": "pyjwt"}  # the import name where it differs from the distribution's
    assert {canonicalize_name(distribution.get(m, m).replace("_", "-")) for m in SERVER_MODULES} <= extra
    assert {"server", "dev", "bench"} <= set(metadata["Provides-Extra"])


def test_a_client_only_install_imports_the_client_and_nothing_of_the_server(client_venv: Path) -> None:
    code = (
        "import importlib.util, sys\n"
        "from ticker.client import TickerClient\n"
        "assert TickerClient.__module__ == 'ticker.client.tickerclient'\n"
        "print(sorted(n for n in ('tornado', 'prometheus_client', 'redis', 'rich', 'uvloop', 'hiredis', 'jwt')"
        " if importlib.util.find_spec(n)))\n"
        "print(sys.modules['ticker'].__file__)\n"
    )
    done = run([client_venv / "bin" / "python", "-I", "-c", code], env=RUN_ENV, cwd=client_venv)
    assert done.returncode == 0, done.stderr
    absent, location = done.stdout.splitlines()
    assert absent == "[]"  # none of the server's packages was installed
    assert Path(location).is_relative_to(client_venv)


@pytest.mark.parametrize("argv", [["bin/ticker", "serve"], ["bin/python", "-I", "-m", "ticker", "serve"]])
def test_ticker_serve_on_a_client_only_install_says_what_to_install(
    client_venv: Path, argv: list[str]
) -> None:
    done = run([client_venv / argv[0], *argv[1:]], env=RUN_ENV, cwd=client_venv)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.endswith(HINT + "\n"), done.stderr
    assert "tornado" in done.stderr


def test_a_server_install_serves_the_page_and_quotes(server_venv: Path) -> None:
    """What `make run` installs (the server extra, no dev tools) is enough to serve, page files included."""
    python = str(server_venv / "bin" / "python")
    with ServerProcess(["--sim-rate", "20"], env=RUN_ENV, python=python, cwd=str(server_venv)) as srv:
        for path in ("/", "/static/app.js", "/static/vendor/lightweight-charts.standalone.production.js"):
            with urllib.request.urlopen(srv.url + path, timeout=timeout(5)) as resp:
                assert resp.status == 200, path
        samples = scrape(srv.url)
        assert any(key.startswith("ticker_") for key in samples)
        assert srv.stop() == 0
