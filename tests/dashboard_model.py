"""The shipped dashboard and rule files as the tests read them: panels, queries, variables and the
metric names an expression reads.

Shared by the structural tests (test_dashboard.py, test_rules.py) and the end-to-end alerting test,
which runs every panel query against a real Prometheus: both must agree on what "a panel's query
with its variables substituted" is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from exporter.collectors import DATA_FAMILIES
from exporter.exposition import (
    BUILD_INFO,
    COLLECTOR_DURATION,
    COLLECTOR_ERRORS,
    COLLECTOR_UP,
    INTERVAL,
    LAST_SUCCESS,
    POLL_DURATION,
    POLL_ERRORS,
    STALE_AFTER,
    UP,
)

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "dashboards" / "sccm-package-status.json"
PROMETHEUS_DIR = ROOT / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
EXAMPLE_PROMETHEUS = PROMETHEUS_DIR / "prometheus.example.yml"
DOCS = ROOT / "docs"
RUNBOOKS = DOCS / "runbooks"
# Where the dashboard's links to the docs point: a copy of the repository on GitHub. A link there is
# checked against the files and headings of this checkout.
REPOSITORY_URL = "https://github.com/sccm-package-exporter/sccm-package-exporter/blob/main/"

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}

# Grafana's own variables, with the values the tests give them. $__rate_interval and $__interval
# are what Grafana computes for a short range at the end-to-end test's 1s scrape interval.
BUILTIN_VARIABLES = {
    "__rate_interval": "15s",
    "__interval": "2s",
    "__interval_ms": "2000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# The dashboard's own variables set to All, as Grafana sends them (their allValue): what a query reads
# with nothing chosen.
ALL = {"target": ".*", "site": ".*", "server": ".*", "package": ".*", "dp_group": ".*"}

# $var, ${var}, ${var:format} and the deprecated [[var]].
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.S)


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows included, with the panels of collapsed rows (kept inside the row)."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


@dataclass(frozen=True)
class Query:
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str
    instant: bool

    def __str__(self) -> str:
        return f"panel {self.panel_id} {self.panel_title!r} query {self.ref_id}"


def queries(dashboard: Mapping[str, Any]) -> list[Query]:
    """The Prometheus queries of every panel, as the panel runs them (instant or range)."""
    return [
        Query(panel["id"], panel.get("title", ""), target["refId"], target["expr"],
              bool(target.get("instant")) and not target.get("range"))
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = dashboard.get("templating", {}).get("list", [])
    return found


def variable_names(text: str) -> set[str]:
    return {next(g for g in match.groups() if g) for match in _VARIABLE.finditer(text)}


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace Grafana variables as Grafana would; an unknown variable is a KeyError."""
    merged = {**BUILTIN_VARIABLES, **values}

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        return merged[name]

    return _VARIABLE.sub(replace, text)


def label_values_query(query: str) -> tuple[str | None, str]:
    """`label_values(selector, label)` -> (selector or None, label); anything else is a ValueError."""
    match = _LABEL_VALUES.match(query)
    if not match:
        raise ValueError(f"not a label_values() query: {query!r}")
    return match.group("selector"), match.group("label")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (parsing it: a syntax error raises ValueError)."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            names.update(m.value for m in node.matchers.matchers if m.name == "__name__")

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


@dataclass(frozen=True)
class OuterJoin:
    """`base * on (keys) group_left (labels) info or on (keys) base`: every row of `base`, with the
    labels of `info` where `info` has a series for its keys, and as it is where it has none.

    PromQL has no outer join: `*` alone drops the rows that `info` lacks (a package whose name is
    not known, a DP without facts); `or on (keys) base` puts them back, and only them.
    """

    base: str
    info: str
    keys: tuple[str, ...]
    labels: tuple[str, ...]


def outer_join(expr: str) -> OuterJoin | None:
    """The parts of `expr` when it is an outer join as above, else None."""
    node = promql_parser.parse(expr)
    if not isinstance(node, promql_parser.BinaryExpr) or str(node.op) != "or":
        return None
    join = node.lhs
    if not isinstance(join, promql_parser.BinaryExpr) or str(join.op) != "*":
        return None
    outer, inner = node.modifier, join.modifier
    if outer is None or inner is None or outer.matching is None or inner.matching is None:
        return None
    include = promql_parser.LabelModifierType.Include
    keys = tuple(inner.matching.labels)
    if (outer.matching.type != include or inner.matching.type != include or tuple(outer.matching.labels) != keys
            or inner.card != promql_parser.VectorMatchCardinality.ManyToOne or str(join.lhs) != str(node.rhs)):
        return None
    return OuterJoin(base=str(node.rhs), info=str(join.rhs), keys=keys, labels=tuple(inner.group_labels or ()))


# Each target's configured schedule: read by the alert rules (SCCMStatusStale), not a chart of the
# dashboard, which shows the state of the targets and not their settings.
SCHEDULE_FAMILIES = frozenset({INTERVAL.name, STALE_AFTER.name})


def exporter_families() -> set[str]:
    """Every family name the exporter serves per target: the collectors' data families, the health of the
    polls and of each collector, and the build info."""
    health = (UP, POLL_DURATION, LAST_SUCCESS, POLL_ERRORS, INTERVAL, STALE_AFTER, COLLECTOR_UP, COLLECTOR_DURATION,
              COLLECTOR_ERRORS, BUILD_INFO)
    return {f.name for f in DATA_FAMILIES} | {f.name for f in health}


def rule_groups(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    groups: list[dict[str, Any]] = data["groups"]
    return groups


def rules(path: Path) -> Iterator[dict[str, Any]]:
    for group in rule_groups(path):
        yield from group["rules"]


def recording_rule_names() -> set[str]:
    return {rule["record"] for rule in rules(RULES)}


def alert_names() -> list[str]:
    return [rule["alert"] for rule in rules(ALERTS)]


def example_prometheus_config(*, probe_job: bool = False) -> str:
    """The text of prometheus.example.yml. It has one scrape job active (`sccm`) and the `sccm-probe`
    job commented out at its end; `probe_job=True` uncomments that job as its comment tells a user
    to (the "# " after the two-space indent removed from each of its lines), so both are active:
    for tests that point each job at an exporter of its own."""
    text = EXAMPLE_PROMETHEUS.read_text(encoding="utf-8")
    if not probe_job:
        return text
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("  # - job_name: sccm-probe"))
    job = lines[start:]
    assert all(line.startswith("  # ") or not line.strip() for line in job), "the probe job ends the file"
    return "".join(lines[:start] + ["  " + line[4:] if line.strip() else line for line in job])


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def markdown_headings(path: Path) -> list[tuple[int, str]]:
    """The headings of a Markdown file, in order, as (level, text); those in code blocks are not."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    return [(len(hashes), heading) for hashes, heading in re.findall(r"^(#{1,6})\s+(.+?)\s*#*$", text, re.M)]


def markdown_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file; a repeated one gets -1, -2... after it."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for _, heading in markdown_headings(path):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        anchors.add(anchor if count == 0 else f"{anchor}-{count}")
    return anchors


def runbook_path(alert: str) -> str:
    """Where the runbook of an alert is, relative to the repository: SCCMPackageFailingOnManyDPs ->
    docs/runbooks/sccm-package-failing-on-many-dps.md. Its `runbook_url` in alerts.yml is this path.
    The SCCM prefix is a word of its own, so that an acronym after it is one too: SCCMDPGroupOutOfSync ->
    sccm-dp-group-out-of-sync.md."""
    prefix, rest = ("SCCM", alert[4:]) if alert.startswith("SCCM") else ("", alert)
    words = ([prefix] if prefix else []) + re.findall(r"[A-Z]+s?(?![a-z])|[A-Z][a-z]+", rest)
    assert "".join(words) == alert, alert
    return f"{RUNBOOKS.relative_to(ROOT).as_posix()}/{'-'.join(words).lower()}.md"
