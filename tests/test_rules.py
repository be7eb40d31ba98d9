"""The shipped Prometheus files: promtool and amtool accept them, the rule unit tests pass, and every
alert carries what an on-call person needs (severity, summary, description, a runbook that exists)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_tool
from dashboard_model import (
    ALERTS,
    PROMETHEUS_DIR,
    ROOT,
    RULES,
    alert_names,
    example_prometheus_config,
    exporter_families,
    markdown_headings,
    metric_names,
    recording_rule_names,
    rule_groups,
    rules,
    runbook_path,
)

ALERTS_TEST = PROMETHEUS_DIR / "alerts.test.yml"
EXAMPLE_ALERTMANAGER = PROMETHEUS_DIR / "alertmanager.example.yml"
# Labels an alert about the distribution of a package names in its description, by the rule's metric.
PER_ROW = {"sccm_package_status", "sccm_package_status_update_timestamp_seconds"}
# How a description names a package when sccm_package_info of the same target knows it (alerts.yml).
NAME_LOOKUP = re.compile(
    r'\{\{ with printf "sccm_package_info\{target=%q, package_id=%q\}"\s+\$labels\.target \$labels\.package_id'
    r' \| query \}\}\{\{ with \. \| first \| label "name" \}\} \(\{\{ \. \}\}\)\{\{ end \}\}\{\{ end \}\}')

# How the description of a distribution point group alert names the group (alerts.yml).
GROUP_NAME_LOOKUP = re.compile(
    r'\{\{ with printf "sccm_dp_group_info\{target=%q, group_id=%q\}"\s+\$labels\.target \$labels\.group_id'
    r' \| query \}\}\{\{ with \. \| first \| label "name" \}\} \(\{\{ \. \}\}\)\{\{ end \}\}\{\{ end \}\}')
# Families about one distribution point (labels target, site, server) and about one DP group.
DP_FAMILIES = {name for name in exporter_families() if name.startswith("sccm_distribution_point_")}
GROUP_FAMILIES = {name for name in exporter_families() if name.startswith("sccm_dp_group_")}


def run(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules(ALERTS) if "alert" in rule]


def test_promtool_checks_the_rule_files(promtool: str) -> None:
    output = run(promtool, "check", "rules", RULES, ALERTS)
    assert f"SUCCESS: {len(recording_rule_names())} rules found" in output
    assert f"SUCCESS: {len(alert_names())} rules found" in output


def test_promtool_unit_tests_of_the_rules_pass(promtool: str) -> None:
    output = run(promtool, "test", "rules", ALERTS_TEST.name, cwd=PROMETHEUS_DIR)
    assert "SUCCESS" in output and "FAILED" not in output


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    assert tests["rule_files"] == ["rules.yml", "alerts.yml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = set(alert_names())
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested not firing"
    tested_records = {case["expr"] for group in tests["tests"] for case in group.get("promql_expr_test", [])}
    assert recording_rule_names() <= tested_records


def test_example_prometheus_config_is_valid_where_a_user_puts_it(promtool: str, tmp_path: Path) -> None:
    """Copied next to the rule files, as its comment says, with the placeholders filled in."""
    for name in ("rules.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    text = example_prometheus_config()
    assert "exporter-host:9864" in text and "alertmanager-host:9093" in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("exporter-host", "cm-exporter.corp.example.com")
                      .replace("alertmanager-host", "alertmanager.corp.example.com"))
    output = run(promtool, "check", "config", config)
    assert "SUCCESS: 2 rule files found" in output
    # Switched to the /probe job as the file's comment says: job 2 uncommented, job 1 out.
    switched = yaml.safe_load(example_prometheus_config(probe_job=True))
    switched["scrape_configs"] = [job for job in switched["scrape_configs"] if job["job_name"] != "sccm"]
    assert [job["job_name"] for job in switched["scrape_configs"]] == ["sccm-probe"]
    config.write_text(yaml.safe_dump(switched, sort_keys=False).replace("exporter-host", "cm-exporter.corp.example.com")
                      .replace("alertmanager-host", "alertmanager.corp.example.com"))
    output = run(promtool, "check", "config", config)
    assert "SUCCESS: 2 rule files found" in output


def test_example_prometheus_config_has_exactly_one_scrape_job_active() -> None:
    """Both jobs scrape every target: both active would store every series twice and fire every
    alert twice. The other one is there, commented out, with how to switch."""
    text = example_prometheus_config()
    active = [job["job_name"] for job in yaml.safe_load(text)["scrape_configs"]]
    assert active == ["sccm"], f"exactly one scrape job may be active, not {active}"
    assert "  # - job_name: sccm-probe" in text
    assert "comment out job 1 and uncomment job 2" in text


def test_example_prometheus_config_scrapes_metrics_and_probe() -> None:
    config = yaml.safe_load(example_prometheus_config(probe_job=True))
    assert config["rule_files"] == ["rules.yml", "alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == ["sccm", "sccm-probe"]
    assert jobs["sccm"]["metrics_path"] == "/metrics"
    probe = jobs["sccm-probe"]
    assert probe["metrics_path"] == "/probe"
    relabels = probe["relabel_configs"]
    assert {"source_labels": ["__address__"], "target_label": "__param_target"} in relabels
    assert {"source_labels": ["__param_target"], "target_label": "instance"} in relabels
    assert any(r.get("target_label") == "__address__" and r.get("replacement") for r in relabels)
    # Every job name matches the exporter alerts' job selector.
    for rule in alert_rules():
        for selector in re.findall(r'job=~"([^"]+)"', rule["expr"]):
            assert all(re.fullmatch(selector, name) for name in jobs), (rule["alert"], selector)
    for job in jobs.values():
        assert _seconds(job["scrape_timeout"]) < _seconds(config["global"]["scrape_interval"])


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, duration
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def test_example_alertmanager_config_is_valid() -> None:
    amtool = require_tool("amtool")
    output = run(amtool, "check-config", EXAMPLE_ALERTMANAGER)
    assert "SUCCESS" in output
    config = yaml.safe_load(EXAMPLE_ALERTMANAGER.read_text())
    receivers = {r["name"] for r in config["receivers"]}
    routed = {route["receiver"] for route in config["route"]["routes"]}
    assert routed <= receivers
    # Grouping by DP: one broken distribution point is one notification per alert name.
    assert {"alertname", "target", "site", "server"} <= set(config["route"]["group_by"])


def test_every_alert_has_severity_summary_description_and_an_existing_runbook() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"SCCM[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        # The runbook's path in the repository (docs/alerts.md: prefix it with RUNBOOK_BASE), a
        # page whose top heading is the alert.
        url = annotations["runbook_url"]
        assert url == runbook_path(name), name
        assert (ROOT / url).is_file(), f"no runbook {url} for {name}"
        assert markdown_headings(ROOT / url)[0] == (1, name), f"{url} is not headed # {name}"


def test_descriptions_name_the_package_server_site_and_target() -> None:
    for rule in alert_rules():
        used = metric_names(rule["expr"])
        description = rule["annotations"]["description"]
        expected = set()
        if used & PER_ROW:
            expected = {"package_id", "server", "site", "target"}
        elif "sccm_server_package_status_rows" in used:
            expected = {"server", "site", "target"}
        elif "sccm_package_status_servers" in used:
            expected = {"package_id", "site", "target"}
        elif used & DP_FAMILIES:
            expected = {"server", "site", "target"}
        elif used & GROUP_FAMILIES:
            expected = {"group_id", "target"}
        elif "sccm_collector_up" in used:
            expected = {"collector", "target"}
        elif used & exporter_families():
            expected = {"target"}
        for label in expected:
            assert "{{ $labels." + label + " }}" in description, (rule["alert"], label)


def test_package_alerts_name_the_package_without_depending_on_package_info() -> None:
    """The name comes from a look-up in the description (tested known and unknown in alerts.test.yml),
    never from the expression: whether and how long an alert fires does not depend on package_info."""
    named = 0
    for rule in alert_rules():
        description = rule["annotations"]["description"]
        assert "sccm_package_info" not in metric_names(rule["expr"]), rule["alert"]
        if "{{ $labels.package_id }}" in description:
            assert description.startswith("Package {{ $labels.package_id }}"), rule["alert"]
            assert NAME_LOOKUP.search(description), f"{rule['alert']}: no package name look-up"
            named += 1
    assert named == 4


def test_group_alerts_name_the_group_without_depending_on_its_info() -> None:
    """As package names: looked up in the description (tested known and unknown in alerts.test.yml), never
    a label of the alert, so a renamed group or dp_groups failing for a while does not restart its `for:`."""
    named = 0
    for rule in alert_rules():
        description = rule["annotations"]["description"]
        assert "sccm_dp_group_info" not in metric_names(rule["expr"]), rule["alert"]
        if "{{ $labels.group_id }}" in description:
            assert GROUP_NAME_LOOKUP.search(description), f"{rule['alert']}: no group name look-up"
            named += 1
    assert named == 1


def test_drive_alerts_leave_drives_of_unknown_size_out() -> None:
    """A drive with unknown size has no size series: an alert on the free share alone would still fire on
    the bytes; each drive alert needs the size series, and above 0."""
    drive_rules = [r for r in alert_rules() if "sccm_distribution_point_drive_free_bytes" in metric_names(r["expr"])]
    assert len(drive_rules) == 2
    for rule in drive_rules:
        assert "and sccm_distribution_point_drive_size_bytes > 0" in rule["expr"], rule["alert"]


def test_collector_alert_leaves_package_status_and_down_targets_to_the_target_alerts() -> None:
    [rule] = [r for r in alert_rules() if "sccm_collector_up" in metric_names(r["expr"])]
    assert 'collector!="package_status"' in rule["expr"]
    assert re.search(r"unless on \([^)]*\btarget\b[^)]*\) sccm_up == 0", rule["expr"]), rule["expr"]


def test_rule_expressions_read_only_what_exists() -> None:
    known = exporter_families() | recording_rule_names() | {"ALERTS", "up"}
    for rule in rules(RULES):
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z_0-9]+", rule["record"]), rule["record"]
        assert metric_names(rule["expr"]) <= exporter_families(), rule["record"]
    for rule in alert_rules():
        assert metric_names(rule["expr"]) <= known, rule["alert"]
        # Muting by ALERTS must name alerts that exist.
        for muted_by in re.findall(r'ALERTS\{alertname="(\w+)"\}', rule["expr"]):
            assert muted_by in alert_names(), (rule["alert"], muted_by)


def test_group_alerts_are_evaluated_before_the_per_row_alerts_they_mute() -> None:
    """Rules of a group run in order: a per-row alert sees a group alert of the same evaluation only
    when it comes after it, in the same group."""
    for group in rule_groups(ALERTS):
        order = [rule.get("alert") for rule in group["rules"]]
        for index, rule in enumerate(group["rules"]):
            for muted_by in re.findall(r'ALERTS\{alertname="(\w+)"\}', rule["expr"]):
                assert muted_by in order[:index], (rule["alert"], muted_by)


@pytest.mark.parametrize("path", [RULES, ALERTS], ids=lambda p: p.name)
def test_every_expression_parses(path: Path) -> None:
    for rule in rules(path):
        metric_names(rule["expr"])
