"""Helpers for the ops tests: metric names in PromQL, the deploy files, and the external binaries."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "ticker-dashboard.json"
PROM_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROM_DIR / "alerts.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

# Names the deploy files use that the ticker server does not expose, each with the reason.
# The broker metrics come with the Redis broker; a memory-broker server (all the tests can start) lacks them.
# Metrics a deploy file may use that a plain (memory-broker) server does not expose; none at present.
BROKER_ONLY: dict[str, str] = {}
# Series Prometheus makes itself for every target, never found in a /metrics page.
PROMETHEUS_SYNTHETIC = {"up": "Prometheus's own per-target scrape health series"}

AGGREGATORS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile",
}  # fmt: skip
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan"}  # fmt: skip
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)[A-Za-z]*")
_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|[A-Za-z0-9_]+)")


@dataclass(frozen=True)
class Selector:
    """One vector selector in an expression: the metric name and its label matchers as written."""

    name: str
    matchers: str


def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    i += 1
    while i < len(expr) and expr[i] != quote:
        i += 2 if expr[i] == "\\" and quote != "`" else 1
    if i >= len(expr):
        raise ValueError(f"unterminated string in {expr!r}")
    return i + 1


def _skip_until(expr: str, i: int, close: str) -> tuple[int, str]:
    """Skip from the opening bracket at ``i`` to just past ``close``; return the new index and the inside."""
    start = i + 1
    i = start
    while i < len(expr) and expr[i] != close:
        i = _skip_string(expr, i) if expr[i] in "\"'`" else i + 1
    if i >= len(expr):
        raise ValueError(f"unbalanced {close!r} in {expr!r}")
    return i + 1, expr[start:i]


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in a PromQL ``expr`` (Grafana ``$variables`` allowed), in order."""
    found: list[Selector] = []
    i = depth = 0
    while i < len(expr):
        ch = expr[i]
        if ch in "()":
            depth += 1 if ch == "(" else -1
            if depth < 0:
                raise ValueError(f"unbalanced ')' at {i} in {expr!r}")
            i += 1
        elif ch.isspace() or ch in "+-*/%^,=!<>":
            i += 1
        elif ch in "\"'`":
            i = _skip_string(expr, i)
        elif ch == "[":
            i, _ = _skip_until(expr, i, "]")  # range or subquery: durations and variables only
        elif ch == "{":
            raise ValueError(f"selector without a metric name in {expr!r}")
        elif ch == "$":
            m = _VARIABLE.match(expr, i)
            if not m:
                raise ValueError(f"bad variable at {i} in {expr!r}")
            i = m.end()
        elif ch == "#":
            nl = expr.find("\n", i)
            i = len(expr) if nl < 0 else nl
        elif (m := _NUMBER.match(expr, i)) is not None:
            i = m.end()
        elif (m := _IDENT.match(expr, i)) is not None:
            word, i = m.group(), m.end()
            j = i
            while j < len(expr) and expr[j].isspace():
                j += 1
            nxt = expr[j] if j < len(expr) else ""
            if word in GROUPING:
                if nxt == "(":
                    i, _ = _skip_until(expr, j, ")")
            elif word in KEYWORDS or word in AGGREGATORS or nxt == "(":
                continue  # operator, modifier or function call
            elif nxt == "{":
                i, inside = _skip_until(expr, j, "}")
                found.append(Selector(word, inside.strip()))
            else:
                found.append(Selector(word, ""))
        else:
            raise ValueError(f"unexpected {ch!r} at {i} in {expr!r}")
    if depth:
        raise ValueError(f"unbalanced '(' in {expr!r}")
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names (as sampled, e.g. ``x_bucket``) that ``expr`` reads."""
    return {s.name for s in selectors(expr)}


def family_of(name: str, histograms: set[str]) -> str:
    """The metric family a sample name belongs to, given the names of the histogram families."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in histograms:
            return name[: -len(suffix)]
    return name


def label_values_metric(query: str) -> str:
    """The metric a Grafana ``label_values(metric{...}, label)`` variable query reads."""
    m = re.fullmatch(
        r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?\s*,\s*\w+\s*\)\s*", query
    )
    if not m:
        raise ValueError(f"not a label_values(metric, label) query: {query!r}")
    return m.group(1)


def load_dashboard() -> dict[str, Any]:
    """The shipped Grafana dashboard as JSON."""
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dash["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_exprs(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) for every query target of the dashboard."""
    return [(p["title"], t["expr"]) for p in dashboard_panels(dash) for t in p.get("targets", [])]


def load_rules() -> list[dict[str, Any]]:
    """Every rule of alerts.yml, across its groups."""
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def deploy_metric_names() -> dict[str, set[str]]:
    """Metric name → where it is used ("dashboard: <panel>", "alert: <name>"), over the dashboard and the rules."""
    used: dict[str, set[str]] = {}
    dash = load_dashboard()
    for title, expr in dashboard_exprs(dash):
        for name in metric_names(expr):
            used.setdefault(name, set()).add(f"dashboard: {title}")
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            used.setdefault(label_values_metric(query), set()).add(f"dashboard variable: {var['name']}")
    for rule in load_rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert: {rule['alert']}")
    return used


def require_binary(name: str) -> str:
    """The path of an external program the test needs; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: it comes with the Debian package `prometheus`; "
            "run `make system-deps` (or `apt-get install prometheus`)",
            pytrace=False,
        )
    return path


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """The metrics reference table of docs/operations.md: exposed name → (type, label names)."""
    text = OPERATIONS_DOC.read_text()
    section = text.split("## Metrics reference", 1)[1].split("\n## ", 1)[0]
    table: dict[str, tuple[str, set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and (m := re.fullmatch(r"`([a-z_:]+)`", cells[0])):
            labels = set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", cells[2])))
            table[m.group(1)] = (cells[1], labels)
    return table
