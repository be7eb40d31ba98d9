"""The fast exposition against prometheus_client's own, on the same rows; promtool; the spliced gzip.

The collector formats lines itself and splices pre-compressed pieces into gzip bodies. Here the
same rows go through prometheus_client (families computed plainly from the rows, in a custom
collector, written by `generate_latest`): both texts parsed with `prometheus_client.parser` must
hold the same families, HELP, TYPE and samples. `promtool check metrics` must accept the body,
and its gzip form must decompress to exactly the plain one. The collectors' health families
(`sccm_collector_*`) are checked exactly, and a body is rebuilt when one optional collector's data
goes stale between two polls.
"""

from __future__ import annotations

import gzip
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from types import MappingProxyType
from typing import Any

from conftest import RowsSource, promtool_check_metrics, render, render_rows, target_status
from datasets import three_site_dataset
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter import wmi
from exporter.collectors.dp_content_state import DPContentAggregate, DPContentRow
from exporter.collectors.dp_info import DPInfoAggregate, DPInfoRow
from exporter.collectors.package_info import PackageInfoAggregate, PackageInfoRow
from exporter.collectors.package_status.aggregate import FAMILIES as DATA_FAMILIES
from exporter.collectors.package_status.aggregate import PackageStatusAggregate
from exporter.collectors.package_status.row import (
    PERSONALITY_NAMES,
    STATUS_NAMES,
    TYPE_NAMES,
    PackageStatusRow,
    parse_item,
)
from exporter.config import COLLECTORS, Collector, TargetConfig
from exporter.errors import REASONS, PollError, Reason
from exporter.exposition import Body, BodyCache, build_body
from exporter.families import Exposition
from exporter.gzipsplice import piece
from exporter.poller import CollectorStatus, TargetPoller, TargetStatus
from exporter.rows import enum_label

Parsed = dict[str, tuple[str, str, dict[tuple[tuple[str, str], ...], float]]]


def dataset_rows(site: str = "ABC") -> list[PackageStatusRow]:
    """The suite's standard rows of one site, through the shared conversions."""
    items = three_site_dataset()[f"root\\SMS\\site_{site}"]["SMS_PackageStatus"]
    converted = []
    for row in items:
        moment = row["UpdateTime"]
        item: wmi.Item = {
            key: None if value is None else str(value) for key, value in row.items()
        }
        item["UpdateTime"] = moment.isoformat() if moment is not None else None
        converted.append(parse_item(item, site))
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
    return target_status(name, 1, True, 0.5, 1.0, None, None, {}, exposition, False)


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
                target_status("down", 2, False, 1.5, None, "timeout", "slow", {"timeout": 2}, None, False)]
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
    text = render([target_status("abc", 1, True, 0.5, 1.0, None, None, {}, exposition, False)])
    data = data_only(text)
    assert exposition.series == sum(len(family[2]) for family in data.values())
    assert exposition.rows == len(odd_rows()) - 1


# --- bodies: parts, spliced gzip, cache --------------------------------------------------------


def body_of(*statuses: TargetStatus) -> Body:
    return build_body(list(statuses))


def test_gzip_body_decompresses_to_exactly_the_plain_body() -> None:
    big = status_of("abc", dataset_rows("ABC") + odd_rows(), "all", "ABC")
    small = status_of("def", odd_rows()[:2], "not_installed")
    down = target_status("down", 1, False, 1.0, None, "auth", "no", {"auth": 1}, None, False)
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


def test_an_extended_body_adds_its_tail_without_copying_or_compressing_the_body_again() -> None:
    status = status_of("abc", dataset_rows("ABC"), "all", "ABC")
    assert status.data is not None
    family = status.data.families["sccm_package_status"]
    body = body_of(status)
    spliced = piece([b"# HELP own_piece A piece made once.\n# TYPE own_piece gauge\nown_piece 1\n"])
    fresh = b"# HELP own_bytes Bytes read now.\n# TYPE own_bytes gauge\nown_bytes 2\n"
    longer = body.extended((spliced, fresh))
    assert longer.text == body.text + spliced.chunks[0] + fresh
    stream = zlib.decompressobj(wbits=31)
    assert stream.decompress(longer.gzipped()) == longer.text
    assert stream.eof and not stream.unused_data  # one gzip member, as Prometheus and every client read it
    assert longer.length == len(longer.text) and longer.gzip_length == len(longer.gzipped())
    assert any(part is chunk for part in longer.parts for chunk in family.chunks)
    assert any(part is family.deflated for part in longer.gzip_parts)
    assert any(part is spliced.deflated for part in longer.gzip_parts)
    assert gzip.decompress(body.gzipped()) == body.text  # the cached body stays as it was
    parsed = parse(longer.text.decode())
    assert parsed["own_piece"][2] == {(): 1.0} and parsed["own_bytes"][2] == {(): 2.0}


def test_body_cache_builds_once_per_generation() -> None:
    cache = BodyCache()
    first = status_of("abc", odd_rows())
    assert cache.get([first]) is cache.get([first])
    later: Any = target_status("abc", 2, True, 0.5, 2.0, None, None, {}, first.data, False)
    assert cache.get([later]) is not cache.get([first])


# --- the collectors' health families -----------------------------------------------------------

REASON_ORDER = ("timeout", "connection", "auth", "wmi_fault", "parse", "other")


def collector(name: Collector, up: bool = True, duration: float | None = 0.25, errors: dict[Reason, int] | None = None,
              data: Exposition | None = None, stale: bool = False) -> CollectorStatus:
    return CollectorStatus(name, up, duration, None if up else "auth", None if up else "denied",
                           MappingProxyType(dict.fromkeys(REASONS, 0) | (errors or {})), data, stale)


def health_section(text: str, first: str) -> str:
    """The lines of `text` from `# HELP first` to its end: the health families close the targets' body
    (the build info, which used to follow them, is on /metrics only: `exporter_families`)."""
    return text[text.index(f"# HELP {first} "):]


def collector_errors(target: str, name: str, **counts: int) -> str:
    head = f'sccm_collector_errors_total{{target="{target}",collector="{name}"'
    return "".join(f'{head},reason="{reason}"}} {counts.get(reason, 0)}\n' for reason in REASON_ORDER)


def several_targets() -> list[TargetStatus]:
    abc = TargetStatus("abc", 3, 1.5, 1714558953.5, (
        collector("package_status", duration=1.25),
        collector("package_info", up=False, duration=0.125, errors={"auth": 2, "timeout": 1}),
        collector("dp_content_state", duration=1.5),
        collector("dp_info", duration=0.0625),
    ), interval=300.0, stale_after=900.0)
    down = TargetStatus("d\"ef", 2, 0.5, None, (
        collector("package_status", up=False, duration=0.5, errors={"timeout": 2}),
        collector("dp_info", duration=0.25),
    ), interval=3600.0, stale_after=5400.0)
    starting = TargetStatus("new", 0, None, None, (
        collector("package_status", up=False, duration=None), collector("package_info", up=False, duration=None),
    ), interval=30.5, stale_after=30.5)
    return [abc, down, starting]


def test_target_timing_families_for_several_targets_exactly() -> None:
    """Each target's own interval and stale_after, a target that never polled too: one header each."""
    text = render(several_targets())
    timing = health_section(text, "sccm_target_interval_seconds")
    assert timing[:timing.index("# HELP sccm_collector_up ")] == (
        "# HELP sccm_target_interval_seconds The target's configured poll interval: a poll starts about this often.\n"
        "# TYPE sccm_target_interval_seconds gauge\n"
        'sccm_target_interval_seconds{target="abc"} 300\n'
        'sccm_target_interval_seconds{target="d\\"ef"} 3600\n'
        'sccm_target_interval_seconds{target="new"} 30.5\n'
        "# HELP sccm_target_stale_after_seconds The target's configured stale_after: how long after its last "
        "success a collector's rows are still served.\n"
        "# TYPE sccm_target_stale_after_seconds gauge\n"
        'sccm_target_stale_after_seconds{target="abc"} 900\n'
        'sccm_target_stale_after_seconds{target="d\\"ef"} 5400\n'
        'sccm_target_stale_after_seconds{target="new"} 30.5\n'
    )


def test_target_timing_comes_from_the_configuration_before_any_poll() -> None:
    """A probe body of one target carries its own schedule, from the start: SCCMStatusStale compares
    the age of the last success with it, for a target that never succeeded too."""
    config = TargetConfig(name="hourly", source="demo", interval=3600.0, timeout=60.0, per_row="all",
                          stale_after=7200.0, collectors=frozenset({"package_status"}))
    poller = TargetPoller(config, OptionalSource())
    status = poller.status()
    assert status.polls == 0 and (status.interval, status.stale_after) == (3600.0, 7200.0)
    text = render([status])
    assert text.count("# TYPE sccm_target_interval_seconds gauge\n") == 1
    assert 'sccm_target_interval_seconds{target="hourly"} 3600\n' in text
    assert 'sccm_target_stale_after_seconds{target="hourly"} 7200\n' in text
    assert 'sccm_last_poll_success_timestamp_seconds{target="hourly"} 0\n' in text


def test_collector_health_families_for_several_targets_exactly() -> None:
    text = render(several_targets())
    assert health_section(text, "sccm_collector_up") == (
        "# HELP sccm_collector_up 1 if the collector's class was read in the target's last poll, else 0; one per "
        "enabled collector (package_status: SMS_PackageStatus, package_info: SMS_PackageBaseclass, dp_content_state: "
        "SMS_PackageStatusDistPointsSummarizer, dp_info: SMS_DistributionPointInfo).\n"
        "# TYPE sccm_collector_up gauge\n"
        'sccm_collector_up{target="abc",collector="package_status"} 1\n'
        'sccm_collector_up{target="abc",collector="package_info"} 0\n'
        'sccm_collector_up{target="abc",collector="dp_content_state"} 1\n'
        'sccm_collector_up{target="abc",collector="dp_info"} 1\n'
        'sccm_collector_up{target="d\\"ef",collector="package_status"} 0\n'
        'sccm_collector_up{target="d\\"ef",collector="dp_info"} 1\n'
        'sccm_collector_up{target="new",collector="package_status"} 0\n'
        'sccm_collector_up{target="new",collector="package_info"} 0\n'
        "# HELP sccm_collector_duration_seconds How long the collector's read of its class took in the target's "
        "last poll.\n"
        "# TYPE sccm_collector_duration_seconds gauge\n"
        'sccm_collector_duration_seconds{target="abc",collector="package_status"} 1.25\n'
        'sccm_collector_duration_seconds{target="abc",collector="package_info"} 0.125\n'
        'sccm_collector_duration_seconds{target="abc",collector="dp_content_state"} 1.5\n'
        'sccm_collector_duration_seconds{target="abc",collector="dp_info"} 0.0625\n'
        'sccm_collector_duration_seconds{target="d\\"ef",collector="package_status"} 0.5\n'
        'sccm_collector_duration_seconds{target="d\\"ef",collector="dp_info"} 0.25\n'
        "# HELP sccm_collector_errors_total Failed reads of the collector's class by reason (timeout, connection, "
        "auth, wmi_fault, parse, other).\n"
        "# TYPE sccm_collector_errors_total counter\n"
        + collector_errors("abc", "package_status")
        + collector_errors("abc", "package_info", auth=2, timeout=1)
        + collector_errors("abc", "dp_content_state")
        + collector_errors("abc", "dp_info")
        + collector_errors('d\\"ef', "package_status", timeout=2)
        + collector_errors('d\\"ef', "dp_info")
        + collector_errors("new", "package_status")
        + collector_errors("new", "package_info")
    )


def test_sccm_up_and_the_poll_families_follow_package_status() -> None:
    text = render(several_targets())
    got = parse(text)
    assert got["sccm_up"][2] == {(("target", "abc"),): 1.0, (("target", 'd"ef'),): 0.0, (("target", "new"),): 0.0}
    assert got["sccm_poll_errors"][2][(("reason", "timeout"), ("target", 'd"ef'))] == 2.0
    assert sum(value for key, value in got["sccm_poll_errors"][2].items() if ("target", "abc") in key) == 0


def test_a_target_running_package_status_alone_reports_that_collector_only() -> None:
    text = render([target_status("old", 1, True, 0.5, 1.0, None, None, {}, None, False)])
    lines = [line for line in text.splitlines() if line.startswith("sccm_collector_")]
    named = {line.split('collector="')[1].split('"')[0] for line in lines}
    assert named == {"package_status"} and 'sccm_up{target="old"} 1' in text


def test_no_duration_header_when_no_collector_has_finished_a_read() -> None:
    text = render([several_targets()[2]])
    assert "sccm_collector_duration_seconds" not in text
    assert 'sccm_collector_up{target="new",collector="package_info"} 0\n' in text


def optional_data() -> dict[Collector, Exposition]:
    info = PackageInfoAggregate()
    info.add([PackageInfoRow("ABC00001", 'Off"ice\n365', "16", 0, 3, 1714558953.5, 1024)])
    content = DPContentAggregate("all")
    content.add([DPContentRow("ABC", "ABC00001", "DP01", 3, 1714558953.25), DPContentRow("ABC", "P2", "DP01", 17)])
    dps = DPInfoAggregate()
    dps.add([DPInfoRow("ABC", "DP01", pxe=True, groups=2)])
    return {"package_info": info.render("abc", "ABC"), "dp_content_state": content.render("abc", "ABC"),
            "dp_info": dps.render("abc", "ABC")}


def test_promtool_accepts_every_collector_and_its_health(promtool: str) -> None:
    data = optional_data()
    core = render_rows("abc", dataset_rows("ABC")[:200] + odd_rows(), "all", "ABC")
    abc = TargetStatus("abc", 3, 1.5, 1714558953.5, (
        collector("package_status", data=core),
        collector("package_info", data=data["package_info"]),
        collector("dp_content_state", up=False, errors={"wmi_fault": 1}, data=data["dp_content_state"]),
        collector("dp_info", data=data["dp_info"]),
    ))
    text = render([abc, *several_targets()[1:]])
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"sccm_package_info", "sccm_dp_content_state_packages", "sccm_distribution_point_groups",
            "sccm_collector_up", "sccm_collector_errors"} <= names
    promtool_check_metrics(promtool, text)


def test_several_targets_collectors_share_one_header_per_family() -> None:
    data = optional_data()
    statuses = [
        TargetStatus(name, 1, 0.5, 1.0, (collector("package_status"), collector("dp_info", data=data["dp_info"])))
        for name in ("abc", "def")
    ]
    text = render(statuses)
    assert text.count("# TYPE sccm_distribution_point_info gauge\n") == 1
    assert text.count("# TYPE sccm_collector_up gauge\n") == 1
    assert text.count("sccm_distribution_point_info{") == 2  # the same exposition under both targets


class OptionalSource(RowsSource):
    """Every collector answers its first poll; package_info fails from then on."""

    def __init__(self) -> None:
        self.polls = 0

    def rows_of(self, collector: str, deadline: float) -> Iterator[Any]:
        if collector == "package_status":
            self.polls += 1
            return iter(odd_rows())
        if collector == "package_info":
            if self.polls > 1:
                raise PollError("connection", "refused")
            return iter([PackageInfoRow("ABC00001", "Office", "16", 0)])
        if collector == "dp_content_state":
            return iter([DPContentRow("ABC", "ABC00001", "DP01", 0)])
        return iter([DPInfoRow("ABC", "DP01")])


def test_the_body_changes_when_only_one_optional_collector_goes_stale() -> None:
    now = [1000.0]
    config = TargetConfig(name="abc", source="winrm", interval=60.0, timeout=5.0, per_row="all", stale_after=120.0,
                          collectors=frozenset(COLLECTORS))
    poller = TargetPoller(config, OptionalSource(), monotonic=lambda: now[0])
    poller.poll_once()
    poller.poll_once()  # package_info fails; its last good data is still served
    cache = BodyCache()
    fresh = cache.get([poller.status()])
    now[0] += 60
    assert cache.get([poller.status()]) is fresh  # nothing changed: the cached body
    assert b"sccm_package_info{" in fresh.text
    now[0] += 61  # past stale_after for package_info alone; no poll in between
    status = poller.status()
    assert status.polls == 2 and not status.stale
    stale = cache.get([status])
    assert stale is not fresh
    assert b"sccm_package_info{" not in stale.text and b"# HELP sccm_package_info " not in stale.text
    for family in (b"sccm_package_status{", b"sccm_dp_content_state{", b"sccm_distribution_point_info{"):
        assert family in stale.text
    assert b'sccm_collector_up{target="abc",collector="package_info"} 0\n' in stale.text
    assert gzip.decompress(stale.gzipped()) == stale.text
    assert cache.get([poller.status()]) is stale
