"""The deployment recipes through the real tools: `systemd-analyze verify` on the units, `promtool check config`
on the compose file's Prometheus configuration. The checks that need no process: tests/unit/test_deploy_setup.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.promql import ALERTS, require_binary
from tests.support.timing import timeout

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
INSTALLED = "/opt/ticker/bin/ticker"  # where the units expect the virtualenv (deploy/systemd/*.service)


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("`systemd-analyze` is not installed: it comes with the Debian package `systemd`; "
                    "run `make system-deps`", pytrace=False)  # fmt: skip
    return path


@pytest.mark.parametrize("name", ["ticker-serve.service", "ticker-feed.service"])
def test_systemd_analyze_verifies_the_unit(name: str, tmp_path: Path) -> None:
    """Verified as shipped, except that ExecStart names this environment's `ticker` (verify checks it exists)."""
    text = (DEPLOY / "systemd" / name).read_text()
    here = Path(sys.executable).parent / "ticker"
    assert text.count(f"ExecStart={INSTALLED} ") == 1 and here.is_file()
    (tmp_path / name).write_text(text.replace(f"ExecStart={INSTALLED} ", f"ExecStart={here} "))
    done = subprocess.run([_systemd_analyze(), "verify", str(tmp_path / name)], capture_output=True, text=True,
                          timeout=timeout(60))  # fmt: skip
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def test_systemd_analyze_reports_a_bad_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt setting is reported (systemd only warns, so output is the signal)."""
    bad = tmp_path / "bad.service"
    bad.write_text(f"[Service]\nExecStart={sys.executable} -V\nRestart=alwayz\n")
    done = subprocess.run([_systemd_analyze(), "verify", str(bad)], capture_output=True, text=True,
                          timeout=timeout(60))  # fmt: skip
    assert "alwayz" in done.stdout + done.stderr


def test_promtool_checks_the_compose_prometheus_config(tmp_path: Path) -> None:
    """As mounted in compose.yaml: the configuration with alerts.yml beside it."""
    promtool = require_binary("promtool")
    shutil.copy(DEPLOY / "container" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    done = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                          text=True, timeout=timeout(60))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout
