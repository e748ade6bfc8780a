"""The deploy files without a server or a process: the PromQL name extractor, dashboard structure, alert rules.

`promtool` checks of the same files are in tests/e2e/test_ops_static.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.support.promql import (
    ALERTS_TEST,
    BROKER_ONLY,
    OPERATIONS_DOC,
    Selector,
    dashboard_exprs,
    dashboard_panels,
    deploy_metric_names,
    family_of,
    label_values_metric,
    load_dashboard,
    load_rules,
    metric_names,
    selectors,
)

HISTOGRAMS = {"ticker_fanout_latency_seconds", "ticker_feed_lag_seconds", "ticker_flush_duration_seconds",
              "ticker_broker_lag_seconds"}  # fmt: skip
SEVERITIES = {"critical", "warning", "info"}


# --- the PromQL name extractor itself


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up == 0", {"up"}),
        ('ticker_feed_up{feed="x"} == 0', {"ticker_feed_up"}),
        (
            "histogram_quantile(0.99, sum by (job, instance, le) (rate(ticker_fanout_latency_seconds_bucket[5m])))",
            {"ticker_fanout_latency_seconds_bucket"},
        ),
        (
            "sum without (le) (rate(a_total[1m])) / on (instance) group_left (version) b_info offset 5m",
            {"a_total", "b_info"},
        ),
        (
            'rate(x_total{job=~"$job", instance=~"${instance}", code!="a,b}"}[$__rate_interval]) > bool 1e3',
            {"x_total"},
        ),
        ("count(max_over_time(sum_of_things[5m:1m])) and ignoring (kind) topk(3, max)", {"sum_of_things"}),
        ("sum(rate(x[5m])) by (le) # trailing comment naming not_a_metric", {"x"}),
    ],
)
def test_metric_names_extracts_only_metrics(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_selectors_keep_matchers_and_reject_nameless_selectors() -> None:
    assert selectors('a{b="c", d=~"e"} + f') == [Selector("a", 'b="c", d=~"e"'), Selector("f", "")]
    with pytest.raises(ValueError):
        selectors('{__name__="a"}')
    with pytest.raises(ValueError):
        selectors("rate(a[5m]")  # the unbalanced bracket is reported, not ignored


def test_family_of_strips_histogram_suffixes_only_for_histograms() -> None:
    assert family_of("ticker_fanout_latency_seconds_bucket", HISTOGRAMS) == "ticker_fanout_latency_seconds"
    assert family_of("ticker_feed_lag_seconds_count", HISTOGRAMS) == "ticker_feed_lag_seconds"
    assert family_of("ticker_updates_sent_total", HISTOGRAMS) == "ticker_updates_sent_total"
    assert family_of("something_count", HISTOGRAMS) == "something_count"


def test_label_values_metric() -> None:
    assert (
        label_values_metric('label_values(ticker_build_info{job=~"$job"}, instance)') == "ticker_build_info"
    )
    with pytest.raises(ValueError):
        label_values_metric("query_result(up)")


# --- the dashboard


def _all_datasources(node: Any) -> list[Any]:
    if isinstance(node, dict):
        found = [node["datasource"]] if "datasource" in node else []
        return found + [d for k, v in node.items() if k != "datasource" for d in _all_datasources(v)]
    if isinstance(node, list):
        return [d for item in node for d in _all_datasources(item)]
    return []


def test_dashboard_is_importable_grafana_10_json() -> None:
    dash = load_dashboard()
    assert dash["schemaVersion"] >= 36  # Grafana 9.x/10.x model
    assert dash["id"] is None and dash["uid"] and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    inst = variables["instance"]
    assert inst["type"] == "query" and inst["multi"] and inst["includeAll"]
    assert label_values_metric(inst["query"]["query"]) == "ticker_build_info"
    # every panel, target and variable query uses the datasource variable, so import picks the Prometheus
    uses = [d for d in _all_datasources(dash["panels"] + dash["templating"]["list"])]
    assert uses and all(d == {"type": "prometheus", "uid": "${datasource}"} for d in uses), uses


def test_dashboard_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = dashboard_panels(load_dashboard())
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]
        if p["type"] != "row":
            assert p["targets"] and p.get("description"), p["title"]


def test_every_dashboard_query_selects_the_chosen_job_and_instance() -> None:
    for title, expr in dashboard_exprs(load_dashboard()):
        for sel in selectors(expr):
            assert 'instance=~"$instance"' in sel.matchers and 'job=~"$job"' in sel.matchers, (title, sel)


def test_dashboard_covers_what_operators_watch() -> None:
    dash = load_dashboard()
    used = {family_of(n, HISTOGRAMS) for _, e in dashboard_exprs(dash) for n in metric_names(e)}
    wanted = {
        "ticker_connections", "ticker_subscriptions", "ticker_symbols_active", "ticker_updates_sent_total",
        "ticker_frames_sent_total", "ticker_bytes_sent_total", "ticker_fanout_latency_seconds",
        "ticker_feed_lag_seconds", "ticker_feed_up", "ticker_feed_reconnects_total", "ticker_feed_errors_total",
        "ticker_updates_conflated_total", "ticker_slow_consumer_disconnects_total", "ticker_client_errors_total",
        "process_cpu_seconds_total", "process_resident_memory_bytes", "ticker_ready", *BROKER_ONLY,
    }  # fmt: skip
    assert wanted <= used, wanted - used
    panels = dashboard_panels(dash)
    heatmaps = [p for p in panels if p["type"] == "heatmap"]
    assert any(
        t.get("format") == "heatmap" and "ticker_fanout_latency_seconds_bucket" in t["expr"]
        for p in heatmaps
        for t in p["targets"]
    )
    quantiles = {
        q for _, e in dashboard_exprs(dash) if "ticker_fanout_latency_seconds_bucket" in e
        for q in re.findall(r"histogram_quantile\((0\.\d+)", e)
    }  # fmt: skip
    assert {"0.5", "0.99"} <= quantiles
    connections = [t for p in panels for t in p.get("targets", []) if "ticker_connections{" in t["expr"]]
    assert any("by (transport)" in t["expr"] and "{{transport}}" in t["legendFormat"] for t in connections)


# --- the alert rules


def _doc_anchors() -> set[str]:
    """GitHub-style anchors of the headings in docs/operations.md."""
    anchors = set()
    for line in OPERATIONS_DOC.read_text().splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            anchors.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def test_every_alert_has_for_severity_summary_description_and_a_documented_runbook() -> None:
    rules = load_rules()
    anchors = _doc_anchors()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], name
        runbook = ann["runbook"]
        assert "\n" not in runbook.strip(), name
        m = re.search(r"docs/operations\.md#([\w-]+)", runbook)
        assert m and m.group(1) in anchors, f"{name}: runbook anchor missing from docs/operations.md"
    required = {"TickerFeedDown", "TickerFeedLagHigh", "TickerFanoutLatencyHigh", "TickerSlowConsumerDisconnects",
                "TickerNotReady", "TickerNoUpdatesFlowing"}  # fmt: skip
    assert required <= set(names)


def test_alerts_use_only_ticker_process_and_up_metrics() -> None:
    for name, where in deploy_metric_names().items():
        assert name == "up" or name.startswith(("ticker_", "process_")), (name, where)


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    assert doc["rule_files"] == ["alerts.yml"]
    fired = {
        case["alertname"] for test in doc["tests"] for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }  # fmt: skip
    quiet = {
        case["alertname"] for test in doc["tests"] for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }  # fmt: skip
    names = {r["alert"] for r in load_rules()}
    assert fired == names, names ^ fired
    assert len(quiet) >= len(names) // 2  # most alerts are also checked to stay quiet before `for:` elapses


def test_docs_alert_table_matches_the_rules() -> None:
    table = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(
            r"^\| \[(\w+)\]\(#\w+\) \| (\w+) \| .* \| (\d+[smh]) \|$", OPERATIONS_DOC.read_text(), re.M
        )
    }
    rules = {r["alert"]: (r["labels"]["severity"], r["for"]) for r in load_rules()}
    assert table == rules
