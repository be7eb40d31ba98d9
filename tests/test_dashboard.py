"""The Grafana dashboard, checked structurally (Grafana itself cannot run here): importable by anyone,
every panel on the data source variable, every query parses and reads metrics that exist, panels
laid out without overlap, links that lead somewhere, names and DP facts joined so that rows without
them stay (and promtool evaluating those joins). test_e2e_alerting.py runs every query."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboard_model import (
    ALL,
    DASHBOARD,
    DATASOURCE_REF,
    DOCS,
    REPOSITORY_URL,
    ROOT,
    RULES,
    SCHEDULE_FAMILIES,
    OuterJoin,
    Query,
    exporter_families,
    label_values_query,
    load_dashboard,
    markdown_anchors,
    metric_names,
    outer_join,
    panels,
    queries,
    recording_rule_names,
    rules,
    substitute,
    variable_names,
    variables,
)

# Core panel types of Grafana 10 and 11 (no plugin to install).
CORE_PANELS = {"row", "stat", "timeseries", "table", "bargauge", "state-timeline", "gauge", "text", "barchart",
               "piechart", "heatmap", "histogram", "status-history"}
PACKAGE_INFO_LABELS = {"name", "version", "package_type"}
DP_INFO_LABELS = ("pull", "pxe", "multicast", "internet_facing")
# What a table row is about, by what its queries read: one package (on a DP or not) or one DP.
PER_PACKAGE = {"sccm_package_status", "sccm_package_status_update_timestamp_seconds", "sccm_package_status_servers",
               "sccm_dp_content_state", "target_site_package_id:sccm_package_status_servers_failing:sum"}
PER_DP = {"sccm_server_package_status_rows", "target_site_server:sccm_server_package_status_rows_failing:sum"}
# The panels about distribution points, filtered by the DP group variable. A panel reading a family with
# a `server` label, or narrowed by $server, is one of them; the others (installed share by site, the
# worst packages across all DPs, the DP groups table, exporter health) are not.
DP_LEVEL_PANELS = {
    "Distributions", "Installed", "Failed", "Retrying", "In flight", "Stuck in flight > 1 day",
    "Distributions not installed, by status", "Worst distribution points",
    "Failing rows: failed or retrying, longest first", "Content in flight, oldest first",
    "Rows not installed, by time since their last status change",
    "Content status by distribution point (console states)",
    "Packages not installed on a distribution point, by console state",
}
# Families (and recording rules) with one series per distribution point or per package on one.
DP_FAMILIES = {
    "sccm_package_status", "sccm_package_status_update_timestamp_seconds", "sccm_server_package_status_rows",
    "sccm_dp_content_state", "sccm_dp_content_state_packages", "sccm_dp_content_last_copied_timestamp_seconds",
    "sccm_distribution_point_info", "sccm_distribution_point_groups", "sccm_distribution_point_status",
    "sccm_distribution_point_status_packages", "sccm_distribution_point_last_status_timestamp_seconds",
    "sccm_distribution_point_monitored", "sccm_distribution_point_drive_free_bytes",
    "sccm_distribution_point_drive_size_bytes", "target_site_server:sccm_server_package_status_rows_failing:sum",
    "target_site_server:sccm_server_package_status_rows_installed:ratio",
}
# The members of the chosen DP groups; with All (".*") every series without a `name` label matches
# `name=~"$dp_group"` too, so `S and on (target, server) GROUP_MEMBERS or S{..., name=~"$dp_group"}` is S.
GROUP_MEMBERS = ('(sccm_dp_group_member{target=~"$target"} and on (target, group_id) '
                 'sccm_dp_group_info{target=~"$target", name=~"$dp_group"})')
_SELECTOR = re.compile(r"(?<![\w:])([\w:]+)\{([^}]*)\}")


def dp_group_filtered(selector: str) -> str:
    """A selector of a DP family as the DP-level panels read it: the members of the chosen groups, or all."""
    match = _SELECTOR.fullmatch(selector)
    assert match, selector
    return (f"({selector} and on (target, server) {GROUP_MEMBERS} or "
            f'{match.group(1)}{{{match.group(2)}, name=~"$dp_group"}})')


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def walk(node: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def test_importable_by_anyone(dashboard: dict[str, Any]) -> None:
    """An `__inputs` data source for the import dialog, a data source variable, and no data source
    uid of ours anywhere: only the variable, Grafana's built-in annotations, or the import input."""
    assert dashboard["__inputs"] == [
        {"name": "DS_PROMETHEUS", "label": "Prometheus", "description": dashboard["__inputs"][0]["description"],
         "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}]
    requires = {(r["type"], r["id"]) for r in dashboard["__requires"]}
    assert ("datasource", "prometheus") in requires
    grafana = next(r for r in dashboard["__requires"] if r["id"] == "grafana")
    assert int(grafana["version"].split(".")[0]) >= 10
    used_types = {p["type"] for p in panels(dashboard) if p["type"] != "row"}
    assert used_types <= {r["id"] for r in dashboard["__requires"] if r["type"] == "panel"}
    assert dashboard["id"] is None and dashboard["uid"] == "sccm-package-status"
    for path, node in walk(dashboard):
        if isinstance(node, dict) and "datasource" in node and not path.startswith("$.templating.list[0]"):
            ref = node["datasource"]
            assert isinstance(ref, dict), f"{path}: data source given by name: {ref!r}"
            assert ref == DATASOURCE_REF or ref == {"type": "grafana", "uid": "-- Grafana --"}, f"{path}: {ref}"
    text = DASHBOARD.read_text()
    assert text.count("${DS_PROMETHEUS}") == 2, "only the data source variable's default may use the import input"


def test_variables_datasource_target_site_server_package_dp_group_chained(dashboard: dict[str, Any]) -> None:
    listed = variables(dashboard)
    assert [v["name"] for v in listed] == ["datasource", "target", "site", "server", "package", "dp_group"]
    datasource = listed[0]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    assert datasource["current"]["value"] == "${DS_PROMETHEUS}"
    known = exporter_families()
    expected_labels = {"target": "target", "site": "site", "server": "server", "package": "package_id",
                       "dp_group": "name"}
    # Earlier variables a variable cannot narrow by: its metric lacks their label (a group has no site;
    # servers and packages are not properties of a group).
    unchained = {"package": {"server"}, "dp_group": {"site", "server", "package"}}
    for index, variable in enumerate(listed[1:], start=1):
        name = variable["name"]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE_REF, name
        assert variable["definition"] == variable["query"], name
        selector, label = label_values_query(variable["query"])
        assert label == expected_labels[name]
        assert selector is not None and metric_names(substitute(selector, ALL)) <= known, name
        # Chained: each variable narrows by every variable before it that its metric has.
        earlier = {v["name"] for v in listed[1:index]}
        assert variable_names(variable["query"]) == earlier - unchained.get(name, set()), name
        assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*", name
        assert variable["refresh"] == 2, f"{name}: refresh on time range change, so new packages appear"


def test_every_panel_queries_through_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        assert panel["type"] in CORE_PANELS, panel["type"]
        if panel["type"] == "row":
            assert "targets" not in panel
            continue
        assert panel.get("title") and panel.get("description"), panel["id"]
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_every_query_parses_and_reads_metrics_that_exist(dashboard: dict[str, Any]) -> None:
    """Known: the exporter's families and the recording rules of rules.yml, nothing else."""
    known = exporter_families() | recording_rule_names()
    read: set[str] = set()
    for query in queries(dashboard):
        expr = substitute(query.expr, ALL)  # an undefined variable is a KeyError here
        names = metric_names(expr)
        assert names, f"{query}: reads no metric"
        assert names <= known, f"{query}: unknown metric {names - known}"
        read |= names
        assert variable_names(query.expr) - {"__rate_interval"} <= set(ALL), query
    # The dashboard shows every data family and the health of the exporter, directly or through
    # the recording rules it reads; the targets' configured schedule is for the alert rules.
    through_rules = {name for rule in rules(RULES) if rule["record"] in read for name in metric_names(rule["expr"])}
    assert exporter_families() - SCHEDULE_FAMILIES - read - through_rules == set()


def test_annotation_shows_firing_sccm_alerts(dashboard: dict[str, Any]) -> None:
    annotations = [a for a in dashboard["annotations"]["list"] if a.get("expr")]
    assert annotations
    for annotation in annotations:
        assert annotation["datasource"] == DATASOURCE_REF
        assert metric_names(substitute(annotation["expr"], ALL)) == {"ALERTS"}


def test_ids_unique_and_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    every = panels(dashboard)
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids)), ids
    boxes = []
    for panel in every:
        grid = panel["gridPos"]
        assert set(grid) == {"x", "y", "w", "h"}, panel["id"]
        assert grid["x"] >= 0 and grid["y"] >= 0 and grid["w"] > 0 and grid["h"] > 0, panel["id"]
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['id']} wider than the 24-column grid"
        boxes.append((panel["id"], grid))
    for (a, ga), (b, gb) in itertools.combinations(boxes, 2):
        apart = (ga["x"] + ga["w"] <= gb["x"] or gb["x"] + gb["w"] <= ga["x"]
                 or ga["y"] + ga["h"] <= gb["y"] or gb["y"] + gb["h"] <= ga["y"])
        assert apart, f"panels {a} and {b} overlap: {ga} {gb}"


def test_units_and_thresholds_set(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        if panel["type"] in {"stat", "timeseries", "bargauge"}:
            defaults = panel["fieldConfig"]["defaults"]
            assert defaults.get("unit"), f"{panel['title']}: no unit"
        if panel["type"] in {"stat", "bargauge"}:
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert steps[0]["value"] is None and all(s["value"] is not None for s in steps[1:]), panel["title"]
            values = [s["value"] for s in steps[1:]]
            assert values == sorted(values), panel["title"]
        if panel["type"] == "table":
            # Every value column of a table has a name and, where it is a number, a unit.
            renamed = next(t for t in panel["transformations"] if t["id"] == "organize")["options"]["renameByName"]
            overridden = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]}
            for column in renamed.values():
                assert column in overridden, f"{panel['title']}: column {column} has no unit or colour"


def test_links_lead_somewhere(dashboard: dict[str, Any]) -> None:
    ids = {p["id"] for p in panels(dashboard)}
    urls = [link["url"] for link in dashboard["links"]]
    for panel in panels(dashboard):
        urls += [link["url"] for link in panel.get("links", [])]
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "links":
                    urls += [link["url"] for link in prop["value"]]
    assert urls
    for url in urls:
        view = re.search(r"viewPanel=(\d+)", url)
        if view:
            assert int(view.group(1)) in ids, url
        if url.startswith("/d/"):
            assert url.startswith("/d/${__dashboard.uid}?") and "${__url_time_range}" in url, url
            for name in variable_names(url):
                assert name in {"__dashboard", "__url_time_range", "__all_variables", "__data", "datasource",
                                "target", "site", "server", "package", "dp_group"}, (url, name)
        elif url.startswith(REPOSITORY_URL):
            # A page of the docs in this checkout, and the heading the anchor names.
            path, _, anchor = url.removeprefix(REPOSITORY_URL).partition("#")
            assert path.startswith("docs/") and (ROOT / path).is_file(), url
            if anchor:
                assert anchor in markdown_anchors(ROOT / path), url
        else:
            pytest.fail(f"link to nowhere known: {url}")


def test_provisioning_picks_the_dashboard_up() -> None:
    datasources = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1
    [prometheus] = datasources["datasources"]
    assert prometheus["type"] == "prometheus" and prometheus["url"].startswith("http")
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/sccm-package-exporter.yml").read_text())
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    # The docker command of docs/dashboard.md mounts grafana/dashboards exactly there.
    guide = (DOCS / "dashboard.md").read_text()
    assert f'grafana/dashboards:{provider["options"]["path"]}:ro' in guide
    assert "grafana/provisioning:/etc/grafana/provisioning:ro" in guide


def joins(dashboard: dict[str, Any]) -> list[tuple[Query, OuterJoin]]:
    found = []
    for query in queries(dashboard):
        join = outer_join(substitute(query.expr, ALL))
        if join:
            found.append((query, join))
    return found


def test_names_and_dp_facts_are_joined_so_that_rows_without_them_stay(dashboard: dict[str, Any]) -> None:
    """Every query reading sccm_package_info or sccm_distribution_point_info is an outer join
    (`base * on (...) group_left (...) info or on (...) base`): package_info off, failing or without
    the package, or dp_info without the DP, leaves the rows of `base` as they are."""
    joined = dict((q, j) for q, j in joins(dashboard))
    for query in queries(dashboard):
        read = metric_names(substitute(query.expr, ALL))
        if not read & {"sccm_package_info", "sccm_distribution_point_info"}:
            continue
        join = joined.get(query)
        assert join, f"{query}: an info family read other than in the outer join form"
        assert not metric_names(join.base) & {"sccm_package_info", "sccm_distribution_point_info"}, query
        if metric_names(join.info) == {"sccm_package_info"}:
            # Not on site: sccm_package_info's site is the target's own, a status row's is its DP's.
            assert join.keys == ("target", "package_id"), query
            assert "name" in join.labels and set(join.labels) <= PACKAGE_INFO_LABELS, query
        else:
            assert metric_names(join.info) == {"sccm_distribution_point_info"}, query
            assert join.keys == ("target", "server") and join.labels == DP_INFO_LABELS, query
        # The info side is unique per key even if two jobs scrape one target: no many-to-many error.
        assert join.info.startswith(f"group by ({', '.join(join.keys + join.labels)})"), query


def test_package_tables_show_names_and_the_dp_table_dp_facts(dashboard: dict[str, Any]) -> None:
    joined: dict[int, set[str]] = {q.panel_id: set() for q, _ in joins(dashboard)}
    for query, join in joins(dashboard):
        joined[query.panel_id] |= metric_names(join.info)
    for panel in panels(dashboard):
        if panel["type"] != "table":
            continue
        read = set().union(*(metric_names(substitute(t["expr"], ALL)) for t in panel["targets"]))
        if read & PER_PACKAGE:
            assert "sccm_package_info" in joined.get(panel["id"], set()), f"{panel['title']}: no package names"
        if read & PER_DP and not read & PER_PACKAGE:
            assert "sccm_distribution_point_info" in joined.get(panel["id"], set()), panel["title"]
            assert "sccm_distribution_point_groups" in read, panel["title"]
            renamed = next(t for t in panel["transformations"] if t["id"] == "organize")["options"]["renameByName"]
            assert set(DP_INFO_LABELS) <= set(renamed), panel["title"]


def test_console_state_panels_say_what_to_turn_on_when_empty(dashboard: dict[str, Any]) -> None:
    """dp_content_state is off by default: its panels show a hint, not a bare "No data"."""
    console = [p for p in panels(dashboard) if p["type"] != "row" and any(
        metric_names(substitute(t["expr"], ALL)) & {"sccm_dp_content_state", "sccm_dp_content_state_packages"}
        for t in p["targets"])]
    assert len(console) >= 2
    for panel in console:
        assert "dp_content_state" in panel["fieldConfig"]["defaults"]["noValue"], panel["title"]
        assert "dp_content_state" in panel["description"], panel["title"]


def test_collector_health_is_shown(dashboard: dict[str, Any]) -> None:
    read = set().union(*(metric_names(substitute(q.expr, ALL)) for q in queries(dashboard)))
    assert {"sccm_collector_up", "sccm_collector_duration_seconds", "sccm_collector_errors_total"} <= read


# --- the joins evaluated by promtool ---------------------------------------------------------------
# Target `cas`: status rows of a child site CHD, package_info of the target's own site CAS (as a
# central site's provider gives them). CAS00001 is known to package_info, CAS00002 is not (only
# to another target's); DP1 is known to dp_info, DP2 is not.
JOIN_INPUT = [
    *(f'sccm_package_status{{job="sccm", instance="x:9864", target="cas", site="CHD", package_id="{p}", '
      f'server="{s}", type="copy", status="{st}", personality="none"}}'
      for p in ("CAS00001", "CAS00002") for s, st in (("DP1.corp", "failed"), ("DP2.corp", "sent"))),
    *(f'sccm_package_status_servers{{job="sccm", instance="x:9864", target="cas", site="CHD", package_id="{p}", '
      f'status="{st}"}}' for p in ("CAS00001", "CAS00002") for st in ("failed", "sent")),
    *(f'sccm_server_package_status_rows{{job="sccm", instance="x:9864", target="cas", site="CHD", server="{s}", '
      f'status="{st}"}}' for s in ("DP1.corp", "DP2.corp") for st in ("failed", "sent")),
    *(f'sccm_dp_content_state{{job="sccm", instance="x:9864", target="cas", site="CHD", package_id="{p}", '
      f'server="DP1.corp", state="install_failed"}}' for p in ("CAS00001", "CAS00002")),
    'sccm_package_info{job="sccm", instance="x:9864", target="other", site="OTH", package_id="CAS00002", '
    'name="Another target\'s", version="", package_type="regular"}',
    'sccm_distribution_point_info{job="sccm", instance="x:9864", target="other", site="OTH", server="DP2.corp", '
    'pull="true", pxe="true", multicast="true", internet_facing="true"}',
]
KNOWN_INPUT = [
    'sccm_package_info{job="sccm", instance="x:9864", target="cas", site="CAS", package_id="CAS00001", '
    'name="Tools & \\"more\\"", version="1.0", package_type="application"}',
    'sccm_distribution_point_info{job="sccm", instance="x:9864", target="cas", site="CHD", server="DP1.corp", '
    'pull="true", pxe="false", multicast="false", internet_facing="false"}',
]


def join_cases(dashboard: dict[str, Any], known: bool) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for query, join in joins(dashboard):
        expr = substitute(query.expr, ALL)
        if join.keys == ("target", "package_id"):
            by = "package_id, name"
            named = '{package_id="CAS00001", name="Tools & \\"more\\""}' if known else '{package_id="CAS00001"}'
            expected = [named, '{package_id="CAS00002"}']
        else:
            by = "server, pull"
            expected = ['{server="DP1.corp", pull="true"}' if known else '{server="DP1.corp"}', '{server="DP2.corp"}']
        cases.append({"expr": f"group by ({by}) ({expr})", "eval_time": "2m",
                      "exp_samples": [{"labels": labels, "value": 1} for labels in expected]})
        # As many rows as the query without the join: none lost, none doubled.
        cases.append({"expr": f"count({expr}) - count({join.base})", "eval_time": "2m",
                      "exp_samples": [{"labels": "{}", "value": 0}]})
    return cases


def test_promtool_evaluates_the_joins_with_and_without_names(
    dashboard: dict[str, Any], promtool: str, tmp_path: Path
) -> None:
    assert {j.keys for _, j in joins(dashboard)} == {("target", "package_id"), ("target", "server")}
    shutil.copy(RULES, tmp_path / "rules.yml")
    tests = [
        {"name": f"package_info and dp_info {'on' if known else 'off'}", "interval": "1m",
         "input_series": [{"series": s, "values": "1x5"} for s in JOIN_INPUT + (KNOWN_INPUT if known else [])],
         "promql_expr_test": join_cases(dashboard, known)}
        for known in (True, False)
    ]
    (tmp_path / "joins.test.yml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", "joins.test.yml"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the DP group variable -------------------------------------------------------------------------


def test_dp_group_variable_lists_the_group_names_of_the_selected_targets(dashboard: dict[str, Any]) -> None:
    [variable] = [v for v in variables(dashboard) if v["name"] == "dp_group"]
    assert variable["label"] == "DP group" and variable["type"] == "query"
    assert variable["query"] == 'label_values(sccm_dp_group_info{target=~"$target"}, name)'
    assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
    assert variable["current"]["value"] == ["$__all"], "All by default: no DP hidden until a group is chosen"


def test_dp_level_panels_filter_by_dp_group(dashboard: dict[str, Any]) -> None:
    """Every panel about distribution points is listed in DP_LEVEL_PANELS, and each selector of a DP
    family in its queries is filtered to the chosen groups' members in the one form that keeps every
    DP under All. The DP facts (sccm_distribution_point_*) are not filtered themselves: their queries
    keep only the rows of a filtered selector (`* on ... or on ...` or `and on (target, server)`)."""
    seen = set()
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        exprs = [t["expr"] for t in panel["targets"]]
        read = set().union(*(metric_names(substitute(e, ALL)) for e in exprs))
        about_dps = bool(read & DP_FAMILIES) or any("server" in variable_names(e) for e in exprs)
        assert about_dps == (panel["title"] in DP_LEVEL_PANELS), f"{panel['title']}: list it in DP_LEVEL_PANELS"
        if not about_dps:
            continue
        seen.add(panel["title"])
        for target in panel["targets"]:
            expr = target["expr"]
            assert "dp_group" in variable_names(expr), f"{panel['title']} {target['refId']}: not filtered by DP group"
            for match in _SELECTOR.finditer(expr):
                name, matchers = match.groups()
                if name not in DP_FAMILIES or 'name=~"$dp_group"' in matchers:
                    continue
                if name.startswith("sccm_distribution_point_"):
                    assert GROUP_MEMBERS in expr, f"{panel['title']} {target['refId']}: {name}"
                    continue
                assert dp_group_filtered(match.group(0)) in expr, f"{panel['title']} {target['refId']}: {name}"
    assert seen == DP_LEVEL_PANELS


# DP1.corp is in the group Europe, DP3.corp (no status rows) in Asia, DP2.corp in none.
GROUP_INPUT = [
    'sccm_dp_group_info{job="sccm", instance="x:9864", target="cas", group_id="{G1}", name="Europe"}',
    'sccm_dp_group_info{job="sccm", instance="x:9864", target="cas", group_id="{G2}", name="Asia"}',
    'sccm_dp_group_member{job="sccm", instance="x:9864", target="cas", site="CHD", server="DP1.corp", '
    'group_id="{G1}"}',
    'sccm_dp_group_member{job="sccm", instance="x:9864", target="cas", site="CHD", server="DP3.corp", '
    'group_id="{G2}"}',
]


def test_promtool_evaluates_the_dp_group_filter(dashboard: dict[str, Any], promtool: str, tmp_path: Path) -> None:
    """All filters nothing, with groups (DP2.corp in none stays) and without any (dp_groups off);
    a chosen group keeps its members only; and under All every DP-level query returns what it
    returns without the filter."""
    [dp_table] = [p for p in panels(dashboard) if p["title"] == "Worst distribution points"]
    rows = next(t["expr"] for t in dp_table["targets"] if t["refId"] == "A")

    def servers(chosen: str, expected: list[str]) -> dict[str, Any]:
        return {"expr": f"group by (server) ({substitute(rows, {**ALL, 'dp_group': chosen})})", "eval_time": "2m",
                "exp_samples": [{"labels": f'{{server="{s}"}}', "value": 1} for s in expected]}

    unfiltered = []
    for query in queries(dashboard):
        if query.panel_title not in DP_LEVEL_PANELS:
            continue
        # The query as it was before the filter: each filtered selector back to the selector alone.
        plain = query.expr
        for match in _SELECTOR.finditer(query.expr):
            plain = plain.replace(dp_group_filtered(match.group(0)), match.group(0))
        assert "dp_group" not in plain, query
        expr, plain = substitute(query.expr, ALL), substitute(plain, ALL)
        unfiltered += [
            {"expr": f"(count({expr}) or vector(0)) - (count({plain}) or vector(0))", "eval_time": "2m",
             "exp_samples": [{"labels": "{}", "value": 0}]},
            {"expr": f"count(({expr}) != ({plain})) or vector(0)", "eval_time": "2m",
             "exp_samples": [{"labels": "{}", "value": 0}]},
        ]
    tests = [
        {"name": "DP groups", "interval": "1m",
         "input_series": [{"series": s, "values": "1x5"} for s in JOIN_INPUT + KNOWN_INPUT + GROUP_INPUT],
         "promql_expr_test": [servers(".*", ["DP1.corp", "DP2.corp"]), servers("Europe", ["DP1.corp"]),
                              servers("(Europe|Asia)", ["DP1.corp"]), servers("Asia", []), *unfiltered]},
        {"name": "no DP groups (dp_groups off or failing)", "interval": "1m",
         "input_series": [{"series": s, "values": "1x5"} for s in JOIN_INPUT + KNOWN_INPUT],
         "promql_expr_test": [servers(".*", ["DP1.corp", "DP2.corp"]), servers("Europe", []), *unfiltered]},
    ]
    shutil.copy(RULES, tmp_path / "rules.yml")
    (tmp_path / "groups.test.yml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", "groups.test.yml"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
