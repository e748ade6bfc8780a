"""The deploy files through `promtool`: rules and config checks, rule unit tests, the dashboard's PromQL.

The checks that need no process are in tests/unit/test_deploy_files.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.promql import (
    ALERTS,
    ALERTS_TEST,
    PROM_CONFIG,
    dashboard_exprs,
    load_dashboard,
    load_rules,
    require_binary,
)
from tests.support.timing import timeout


def test_dashboard_expressions_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each dashboard query once Grafana's variables are replaced by what Grafana sends."""
    promtool = require_binary("promtool")
    rules = []
    for n, (_, expr) in enumerate(dashboard_exprs(load_dashboard())):
        concrete = expr.replace("$__rate_interval", "1m").replace("$job", ".+").replace("$instance", ".+")
        assert "$" not in concrete, expr
        rules.append({"record": f"dashboard:query_{n}", "expr": concrete})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=timeout(60)
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_check_rules() -> None:
    promtool = require_binary("promtool")
    done = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=timeout(60)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in done.stdout


def test_promtool_check_config() -> None:
    promtool = require_binary("promtool")
    done = subprocess.run(
        [promtool, "check", "config", str(PROM_CONFIG)], capture_output=True, text=True, timeout=timeout(60)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout  # rule_files resolves to alerts.yml beside it


def test_promtool_rule_unit_tests() -> None:
    promtool = require_binary("promtool")
    done = subprocess.run(
        [promtool, "test", "rules", ALERTS_TEST.name],
        cwd=ALERTS_TEST.parent,
        capture_output=True,
        text=True,
        timeout=timeout(120),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
