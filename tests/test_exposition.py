"""The fast exposition against prometheus_client's own, on the same rows; promtool; the spliced gzip.

The collector formats lines itself and splices pre-compressed pieces into gzip bodies. Here the
same rows go through prometheus_client (families computed plainly from the rows, in a custom
collector, written by `generate_latest`): both texts parsed with `prometheus_client.parser` must
hold the same families, HELP, TYPE and samples. `promtool check metrics` must accept the body,
and its gzip form must decompress to exactly the plain one.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from conftest import promtool_check_metrics
from datasets import three_site_dataset
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter import wsman
from exporter.collectors.package_status import FAMILIES as DATA_FAMILIES
from exporter.collectors.package_status import PackageStatusAggregate, render_rows
from exporter.exposition import Body, BodyCache, build_body, render
from exporter.pagerows import item_row
from exporter.poller import TargetStatus
from exporter.rows import PERSONALITY_NAMES, STATUS_NAMES, TYPE_NAMES, PackageStatusRow, enum_label

Parsed = dict[str, tuple[str, str, dict[tuple[tuple[str, str], ...], float]]]


def dataset_rows(site: str = "ABC") -> list[PackageStatusRow]:
    """The suite's standard rows of one site, through the shared conversions."""
    items = three_site_dataset()[f"root\\SMS\\site_{site}"]["SMS_PackageStatus"]
    converted = []
    for number, row in enumerate(items, 1):
        moment = row["UpdateTime"]
        item: wsman.Item = {
            key: None if value is None else str(value) for key, value in row.items()
        }
        item["UpdateTime"] = moment.isoformat() if moment is not None else None
        converted.append(item_row(item, site, number))
    return converted


def odd_rows() -> list[PackageStatusRow]:
    """Escaping, unknown enums, duplicates (last wins), nil times, two personalities of one server."""
    return [
        PackageStatusRow("ABC", "ABC00001", 'DP"01\\share\nnext', 2, 3, 0, 1714558953.488171, "x"),
        PackageStatusRow("ABC", "P\u00e9\u20ac", "DP02", 2, 9, 7, None, "x"),
        PackageStatusRow("ABC", "ABC00002", "DP02", 3, 5, 0, 1.0, "x"),
        PackageStatusRow("ABC", "ABC00002", "DP02", 3, 5, 0, 2.5, "x"),  # duplicate: 2.5 wins
        PackageStatusRow("ABC", "ABC00003", "DP03", 2, 5, 0, 10.0, "x"),
        PackageStatusRow("ABC", "ABC00003", "DP03", 2, 5, 2, 11.0, "x"),  # same server, other personality
        PackageStatusRow("DEF", "ABC00003", "DP03", 2, 4, 1, -0.5, "x"),
        PackageStatusRow("ABC", "ABC00004", "CM01", 1, 3, 0, 1e-7, "x"),  # only a MASTER row
    ]


# --- the reference: families computed plainly, written by prometheus_client --------------------


def reference_families(target: str, rows: Iterable[PackageStatusRow], per_row: str,
                       own_site: str | None) -> list[Metric]:
    unique = {row.key: row for row in rows}.values()
    help_of = {family.name: family.help for family in DATA_FAMILIES}
    row_labels = ["target", "site", "package_id", "server", "type", "status", "personality"]
    one = GaugeMetricFamily("sccm_package_status", help_of["sccm_package_status"], labels=row_labels)
    stamps = GaugeMetricFamily("sccm_package_status_update_timestamp_seconds",
                               help_of["sccm_package_status_update_timestamp_seconds"], labels=row_labels)

    def names(row: PackageStatusRow) -> list[str]:
        return [target, row.site, row.package_id, row.server, enum_label(row.type, TYPE_NAMES),
                enum_label(row.status, STATUS_NAMES), enum_label(row.personality, PERSONALITY_NAMES)]

    for row in unique:
        if per_row == "all" or (per_row == "not_installed" and row.status != 3):
            one.add_metric(names(row), 1)
            if row.update_time is not None:
                stamps.add_metric(names(row), row.update_time)

    def status(row: PackageStatusRow) -> str:
        return enum_label(row.status, STATUS_NAMES)

    known = list(STATUS_NAMES.values())
    counts = Counter((row.site, enum_label(row.type, TYPE_NAMES), status(row)) for row in unique)
    groups = {(site, t) for site in {row.site for row in unique} | ({own_site} if own_site else set())
              for t in TYPE_NAMES.values()} | {(site, t) for site, t, _ in counts}
    by_status = GaugeMetricFamily("sccm_package_status_rows", help_of["sccm_package_status_rows"],
                                  labels=["target", "site", "type", "status"])
    for site, type_name, name in sorted({(*g, s) for g in groups for s in known} | set(counts)):
        by_status.add_metric([target, site, type_name, name], counts[(site, type_name, name)])

    copies = [row for row in unique if row.type == 2]
    per_server = Counter((row.site, row.server, status(row)) for row in copies)
    servers = GaugeMetricFamily("sccm_server_package_status_rows", help_of["sccm_server_package_status_rows"],
                                labels=["target", "site", "server", "status"])
    for site, server, name in sorted({(s, v, k) for s, v, _ in per_server for k in known} | set(per_server)):
        servers.add_metric([target, site, server, name], per_server[(site, server, name)])

    holders = Counter(key[:3] for key in {(row.site, row.package_id, status(row), row.server) for row in copies})
    packages = {(row.site, row.package_id) for row in unique}
    held = GaugeMetricFamily("sccm_package_status_servers", help_of["sccm_package_status_servers"],
                             labels=["target", "site", "package_id", "status"])
    for site, package, name in sorted({(*p, k) for p in packages for k in known} | set(holders)):
        held.add_metric([target, site, package, name], holders[(site, package, name)])
    return [one, stamps, by_status, servers, held]


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def reference_text(targets: list[tuple[str, list[PackageStatusRow], str, str | None]]) -> str:
    merged: dict[str, Metric] = {}
    for target, rows, per_row, own_site in targets:
        for family in reference_families(target, rows, per_row, own_site):
            if family.name in merged:
                merged[family.name].samples.extend(family.samples)
            else:
                merged[family.name] = family
    registry = CollectorRegistry()
    registry.register(_Fixed([f for f in merged.values() if f.samples]))  # type: ignore[arg-type]
    return generate_latest(registry).decode("utf-8")


def parse(text: str) -> Parsed:
    parsed: Parsed = {}
    for family in text_string_to_metric_families(text):
        samples: dict[tuple[tuple[str, str], ...], float] = {}
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            assert key not in samples, f"{sample.name}{key} twice"
            samples[key] = sample.value
        parsed[family.name] = (family.type, family.documentation, samples)
    return parsed


def status_of(name: str, rows: list[PackageStatusRow], per_row: str = "all",
              own_site: str | None = None) -> TargetStatus:
    exposition = render_rows(name, rows, per_row, own_site)  # type: ignore[arg-type]
    return TargetStatus(name, 1, True, 0.5, 1.0, None, None, {}, exposition, False)


def data_only(text: str) -> Parsed:
    return {name: family for name, family in parse(text).items() if name.startswith("sccm_package")
            or name.startswith("sccm_server")}


def test_fast_path_and_prometheus_client_give_the_same_families_and_samples() -> None:
    abc, def_ = dataset_rows("ABC"), dataset_rows("DEF")
    targets = [("abc", abc + odd_rows(), "all", "ABC"), ("def", def_, "not_installed", "DEF"),
               ("empty", [], "all", "XYZ"), ("none", abc[:50], "none", None)]
    fast = render([status_of(name, rows, per_row, site) for name, rows, per_row, site in targets])
    reference = reference_text(targets)
    got, want = data_only(fast), parse(reference)
    assert got.keys() == want.keys() == {family.name for family in DATA_FAMILIES}
    for name in want:
        assert got[name][0] == want[name][0], name  # TYPE
        assert got[name][1] == want[name][1], name  # HELP
        assert got[name][2] == want[name][2], name  # every sample, labels and value
    assert len(got["sccm_package_status"][2]) > 2000


def test_promtool_accepts_the_whole_body(promtool: str) -> None:
    statuses = [status_of("abc", dataset_rows("ABC") + odd_rows(), "all", "ABC"),
                status_of("def", dataset_rows("DEF"), "not_installed", "DEF"),
                TargetStatus("down", 2, False, 1.5, None, "timeout", "slow", {"timeout": 2}, None, False)]
    promtool_check_metrics(promtool, render(statuses))


def test_rows_added_page_by_page_give_what_all_at_once_gives() -> None:
    rows = dataset_rows("ABC") + odd_rows()
    whole = PackageStatusAggregate("all")
    whole.add(rows)
    paged = PackageStatusAggregate("all")
    for start in range(0, len(rows), 97):
        paged.add(rows[start : start + 97])
    paged.add(rows[:300])  # a restarted enumeration sends rows again
    assert paged.rows == whole.rows == len({row.key for row in rows})
    assert paged.render("abc", "ABC").samples == whole.render("abc", "ABC").samples


def test_series_and_rows_are_counted() -> None:
    exposition = render_rows("abc", odd_rows(), "all")
    text = render([TargetStatus("abc", 1, True, 0.5, 1.0, None, None, {}, exposition, False)])
    data = data_only(text)
    assert exposition.series == sum(len(family[2]) for family in data.values())
    assert exposition.rows == len(odd_rows()) - 1


# --- bodies: parts, spliced gzip, cache --------------------------------------------------------


def body_of(*statuses: TargetStatus) -> Body:
    return build_body(list(statuses))


def test_gzip_body_decompresses_to_exactly_the_plain_body() -> None:
    big = status_of("abc", dataset_rows("ABC") + odd_rows(), "all", "ABC")
    small = status_of("def", odd_rows()[:2], "not_installed")
    down = TargetStatus("down", 1, False, 1.0, None, "auth", "no", {"auth": 1}, None, False)
    for statuses in ([big], [big, small, down], [down], []):
        body = body_of(*statuses)
        assert gzip.decompress(body.gzipped()) == body.text
        assert body.length == len(body.text) and body.gzip_length == len(body.gzipped())
        assert body.text.decode() == render(statuses)
    assert len(body_of(big).gzipped()) < len(body_of(big).text) / 5


def test_a_body_does_not_copy_the_rendered_families() -> None:
    status = status_of("abc", dataset_rows("ABC"), "all", "ABC")
    assert status.data is not None
    family = status.data.families["sccm_package_status"]
    body = body_of(status)
    assert any(part is chunk for part in body.parts for chunk in family.chunks)
    assert any(part is family.deflated for part in body.gzip_parts)


def test_body_cache_builds_once_per_generation() -> None:
    cache = BodyCache()
    first = status_of("abc", odd_rows())
    assert cache.get([first]) is cache.get([first])
    later: Any = TargetStatus("abc", 2, True, 0.5, 2.0, None, None, {}, first.data, False)
    assert cache.get([later]) is not cache.get([first])
