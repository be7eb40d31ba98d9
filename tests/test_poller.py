"""Polling one target: outcome recording, last good data kept until stale_after, deadlines."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import RowsSource, wait_for_polls

from exporter.collectors.dp_content_state import DPContentRow
from exporter.collectors.dp_drive import DriveRow
from exporter.collectors.dp_groups import GroupRow
from exporter.collectors.dp_info import DPInfoRow
from exporter.collectors.dp_status import DPStatusRow
from exporter.collectors.package_info import PackageInfoRow
from exporter.collectors.package_status.row import PackageStatusRow
from exporter.config import COLLECTORS, Collector, TargetConfig
from exporter.errors import REASONS, PollError
from exporter.poller import GRACE, CollectorStatus, TargetPoller, TargetStatus

ROW = PackageStatusRow("ABC", "ABC00001", "DP01", 2, 3, 0, 1.0, "DP01")


class ScriptedSource(RowsSource):
    """A source whose polls follow a script: a list of rows, an exception, or a hang."""

    def __init__(self, *script: list[PackageStatusRow] | BaseException | str) -> None:
        self.script = list(script)
        self.release = threading.Event()
        self.closed = False

    def rows_of(self, collector: str, deadline: float) -> Iterator[PackageStatusRow]:
        assert collector == "package_status"  # the tests of this source run package_status alone
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if step == "hang":
            self.release.wait(10)
            raise PollError("timeout", "released")
        if isinstance(step, BaseException):
            raise step
        assert isinstance(step, list)
        yield from step

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def target(**overrides: float) -> TargetConfig:
    values: dict[str, float] = {"interval": 60.0, "timeout": 0.3, "stale_after": 120.0} | overrides
    return TargetConfig(name="abc", source="demo", per_row="all", collectors=frozenset({"package_status"}),
                        **values)  # type: ignore[arg-type]


def test_a_successful_poll_serves_its_rows_and_sets_up() -> None:
    poller = TargetPoller(target(), ScriptedSource([ROW]))
    poller.poll_once()
    status = poller.status()
    assert status.up and status.polls == 1 and status.last_success is not None
    assert status.data is not None and status.data.rows == 1
    assert "sccm_package_status{" in status.data.samples["sccm_package_status"]


def test_a_failed_poll_counts_its_reason_and_keeps_the_last_good_rows(caplog: pytest.LogCaptureFixture) -> None:
    poller = TargetPoller(target(), ScriptedSource([ROW], PollError("wmi_fault", "invalid class", wmi_code=0x80041010)))
    poller.poll_once()
    poller.poll_once()
    status = poller.status()
    assert not status.up and status.polls == 2
    assert status.errors["wmi_fault"] == 1 and sum(status.errors.values()) == 1
    assert status.data is not None and status.data.rows == 1  # still served
    assert status.last_reason == "wmi_fault" and "0x80041010" in (status.last_error or "")
    failed = [r for r in caplog.records if r.getMessage() == "poll failed"]
    assert failed and failed[0].__dict__["target"] == "abc" and failed[0].__dict__["reason"] == "wmi_fault"


def test_rows_are_dropped_once_stale_after_has_passed_since_the_last_success() -> None:
    clock = Clock()
    poller = TargetPoller(target(stale_after=120.0), ScriptedSource([ROW], PollError("connection", "refused")),
                          monotonic=clock)
    poller.poll_once()
    poller.poll_once()
    clock.now += 119
    assert poller.status().data is not None and not poller.status().stale
    clock.now += 2
    status = poller.status()
    assert status.stale and status.data is None
    assert status.errors["connection"] == 1  # health stays


def test_an_unexpected_exception_is_counted_as_other_and_the_poller_survives() -> None:
    poller = TargetPoller(target(), ScriptedSource(RuntimeError("bug"), [ROW]))
    poller.poll_once()
    assert poller.status().errors["other"] == 1
    poller.poll_once()
    assert poller.status().up


def test_a_hanging_source_fails_by_the_deadline_and_no_second_poll_starts_while_it_hangs() -> None:
    source = ScriptedSource("hang")
    poller = TargetPoller(target(timeout=0.3), source)
    started = time.monotonic()
    poller.poll_once()
    assert time.monotonic() - started < 2.0
    status = poller.status()
    assert not status.up and status.errors["timeout"] == 1
    poller.poll_once()  # the first is still running: counted, not started again
    assert poller.status().errors["timeout"] == 2
    assert poller.status().last_error == "previous poll still running past its deadline"
    source.release.set()


def test_background_thread_polls_and_stops() -> None:
    source = ScriptedSource([ROW])
    poller = TargetPoller(target(interval=0.05, stale_after=1.0), source)
    poller.start()
    assert wait_for_polls(poller, 3, timeout=5)
    poller.stop()
    assert source.closed


def test_more_rows_than_max_rows_fails_the_poll_and_keeps_the_last_good_rows() -> None:
    rows = [ROW._replace(package_id=f"ABC{i:05d}") for i in range(5)]
    poller = TargetPoller(TargetConfig(name="abc", source="demo", per_row="all", interval=60.0, timeout=5.0,
                                       stale_after=120.0, max_rows=5), ScriptedSource(rows, rows + rows[:1]))
    poller.poll_once()
    good = poller.status()
    assert good.up and good.data is not None and good.data.rows == 5
    poller.poll_once()
    status = poller.status()
    assert not status.up
    assert status.last_reason == "other" and status.last_error is not None and "max_rows 5" in status.last_error
    assert status.data is good.data


# --- several collectors -------------------------------------------------------------------------

ALL: frozenset[Collector] = frozenset(COLLECTORS)
INFO = PackageInfoRow("ABC00001", "Office", "16", 0, 3, 1.0, 1024)
CONTENT = DPContentRow("ABC", "ABC00001", "DP01", 0, 1.0)
DP = DPInfoRow("ABC", "DP01", groups=2)
GOOD: dict[Collector, list[Any]] = {
    "package_status": [ROW], "package_info": [INFO], "dp_content_state": [CONTENT], "dp_info": [DP],
    "dp_status": [DPStatusRow("ABC", "DP01", 1)], "dp_drive": [DriveRow("ABC", "DP01", "D:", 1, 2)],
    "dp_groups": [GroupRow("{G1}", "All DPs", 1, 2, 0)],
}
# The first family of each collector: what shows its data is served.
FIRST_FAMILY: dict[Collector, str] = {
    "package_status": "sccm_package_status", "package_info": "sccm_package_info",
    "dp_content_state": "sccm_dp_content_state", "dp_info": "sccm_distribution_point_info",
    "dp_status": "sccm_distribution_point_status", "dp_drive": "sccm_distribution_point_drive_free_bytes",
    "dp_groups": "sccm_dp_group_info",
}

Step = list[Any] | BaseException | str


class CollectorsSource(RowsSource):
    """A source with every collector's read; each follows its own script of steps: rows, an
    exception (raised after `rows_first` rows), "hang" (until released), "sleep" (0.2 s, then rows).
    The last step repeats. Reads are counted per collector."""

    def __init__(self, **scripts: list[Step]) -> None:
        self.scripts: dict[str, list[Step]] = {name: [GOOD[name]] for name in COLLECTORS}
        self.scripts.update(scripts)
        self.reads: Counter[str] = Counter()
        self.release = threading.Event()
        self.hung: list[threading.Thread] = []  # the threads of the reads that hang
        self.rows_first = 0

    def rows_of(self, name: Collector, deadline: float) -> Iterator[Any]:
        self.reads[name] += 1
        script = self.scripts[name]
        step = script.pop(0) if len(script) > 1 else script[0]
        if step == "hang":
            self.hung.append(threading.current_thread())
            self.release.wait(10)
            raise PollError("timeout", "released")
        if step == "sleep":
            time.sleep(0.2)
            step = GOOD[name]
        if isinstance(step, BaseException):
            yield from GOOD[name][: self.rows_first]
            raise step
        assert isinstance(step, list)
        yield from step


def collectors_target(collectors: frozenset[Collector] = ALL, **overrides: Any) -> TargetConfig:
    values: dict[str, Any] = {"interval": 60.0, "timeout": 0.3, "stale_after": 120.0} | overrides
    return TargetConfig(name="abc", source="winrm", per_row="all", collectors=collectors, **values)


def by_name(status: TargetStatus) -> dict[str, CollectorStatus]:
    return {collector.name: collector for collector in status.collectors}


def served(status: TargetStatus) -> set[str]:
    """The collectors whose data a scrape of this status would send."""
    families = {name for data in status.exposed for name, piece in data.families.items() if piece.size}
    return {name for name, family in FIRST_FAMILY.items() if family in families}


def test_every_enabled_collector_is_read_and_served_package_status_first() -> None:
    poller = TargetPoller(collectors_target(), CollectorsSource())
    poller.poll_once()
    status = poller.status()
    assert [c.name for c in status.collectors] == ["package_status", "package_info", "dp_content_state", "dp_info",
                                                   "dp_status", "dp_drive", "dp_groups"]
    assert status.up and all(c.up and not c.stale for c in status.collectors)
    assert served(status) == set(COLLECTORS)
    assert status.data is by_name(status)["package_status"].data
    assert all(sum(c.errors.values()) == 0 for c in status.collectors)


FAILURES = [
    PollError("timeout", "slow"), PollError("connection", "refused"), PollError("auth", "denied"),
    PollError("wmi_fault", "invalid class", wmi_code=0x80041010), PollError("parse", "broken XML"),
    PollError("other", "max rows"), RuntimeError("a bug"),
]


@pytest.mark.parametrize("failing", ["package_info", "dp_content_state", "dp_info"])
@pytest.mark.parametrize("error", FAILURES, ids=lambda e: getattr(e, "reason", type(e).__name__))
def test_an_optional_collector_failing_leaves_the_others_up_and_served_and_sccm_up_alone(
    failing: Collector, error: BaseException
) -> None:
    reason = error.reason if isinstance(error, PollError) else "other"
    script: list[Step] = [error]
    poller = TargetPoller(collectors_target(), CollectorsSource(**{failing: script}))
    poller.poll_once()
    status = poller.status()
    collectors = by_name(status)
    assert status.up and status.last_success is not None  # sccm_up follows package_status only
    assert sum(status.errors.values()) == 0  # sccm_poll_errors_total too
    assert not collectors[failing].up and collectors[failing].last_reason == reason
    assert dict(collectors[failing].errors) == dict.fromkeys(REASONS, 0) | {reason: 1}
    assert all(c.up and sum(c.errors.values()) == 0 for c in status.collectors if c.name != failing)
    assert served(status) == set(COLLECTORS) - {failing}
    if isinstance(error, RuntimeError):
        assert collectors[failing].last_error == "RuntimeError: a bug"


def test_package_status_failing_sets_sccm_up_to_0_and_the_optional_collectors_are_still_served() -> None:
    clock = Clock()
    poller = TargetPoller(collectors_target(), CollectorsSource(package_status=[PollError("auth", "denied")]),
                          clock=clock)
    poller.poll_once()
    status = poller.status()
    assert not status.up and status.last_success is None and status.errors["auth"] == 1
    assert status.last_reason == "auth" and by_name(status)["package_status"].errors["auth"] == 1
    assert [c.name for c in status.collectors if c.up] == [
        "package_info", "dp_content_state", "dp_info", "dp_status", "dp_drive", "dp_groups"]
    assert served(status) == {"package_info", "dp_content_state", "dp_info", "dp_status", "dp_drive", "dp_groups"}


def test_last_poll_success_timestamp_follows_package_status() -> None:
    clock = Clock()
    source = CollectorsSource(package_status=[[ROW], PollError("connection", "refused")])
    poller = TargetPoller(collectors_target(), source, clock=clock)
    poller.poll_once()
    assert poller.status().last_success == 1000.0
    clock.now = 2000.0
    poller.poll_once()  # the optional collectors succeed, package_status does not
    assert poller.status().last_success == 1000.0


def test_errors_are_counted_per_collector_and_reason_over_polls() -> None:
    source = CollectorsSource(
        package_info=[PollError("auth", "denied"), PollError("auth", "denied"), [INFO]],
        dp_info=[PollError("wmi_fault", "invalid class"), PollError("parse", "bad"), PollError("parse", "bad")],
    )
    poller = TargetPoller(collectors_target(), source)
    for _ in range(3):
        poller.poll_once()
    collectors = by_name(poller.status())
    assert {name: {r: n for r, n in c.errors.items() if n} for name, c in collectors.items()} == {
        "package_status": {}, "package_info": {"auth": 2}, "dp_content_state": {},
        "dp_info": {"wmi_fault": 1, "parse": 2}, "dp_status": {}, "dp_drive": {}, "dp_groups": {},
    }
    assert collectors["package_info"].up and collectors["package_info"].last_reason is None
    assert not collectors["dp_info"].up and collectors["dp_info"].last_error == "bad"


def test_a_read_failing_part_way_uses_none_of_its_rows_and_keeps_the_last_good_data() -> None:
    source = CollectorsSource(dp_info=[[DP, DP._replace(server="DP02")], PollError("connection", "reset")])
    poller = TargetPoller(collectors_target(), source)
    poller.poll_once()
    good = by_name(poller.status())["dp_info"].data
    assert good is not None and good.rows == 2
    source.rows_first = 1  # the failing read yields a row before it fails
    poller.poll_once()
    assert by_name(poller.status())["dp_info"].data is good


def test_a_failed_collector_serves_its_last_good_data_until_stale_after_then_drops_it() -> None:
    clock = Clock()
    source = CollectorsSource(package_info=[[INFO], PollError("connection", "refused")])
    poller = TargetPoller(collectors_target(stale_after=120.0), source, monotonic=clock)
    poller.poll_once()  # t=1000: all good
    poller.poll_once()  # package_info fails
    good = by_name(poller.status())["package_info"].data
    assert good is not None and good.rows == 1
    clock.now = 1120.0
    assert served(poller.status()) == set(COLLECTORS)
    clock.now = 1121.0  # more than stale_after since its last success
    status = poller.status()
    collector = by_name(status)["package_info"]
    assert collector.stale and collector.data is None
    assert served(status) == {"package_status", "dp_content_state", "dp_info", "dp_status", "dp_drive", "dp_groups"}
    assert not status.stale and status.up and status.data is not None  # a collector that is up is never stale
    assert not collector.up and collector.errors["connection"] == 1  # health stays


def test_collectors_go_stale_independently_of_each_other() -> None:
    clock = Clock()
    source = CollectorsSource(
        package_info=[[INFO], PollError("connection", "refused")],
        dp_info=[[DP], [DP], PollError("auth", "denied")],
    )
    poller = TargetPoller(collectors_target(stale_after=120.0), source, monotonic=clock)
    poller.poll_once()  # t=1000: all good
    clock.now = 1050.0
    poller.poll_once()  # package_info fails (last success 1000); dp_info succeeds (1050)
    clock.now = 1100.0
    poller.poll_once()  # dp_info fails (last success 1050)
    clock.now = 1121.0
    first = poller.status()
    assert by_name(first)["package_info"].stale and not by_name(first)["dp_info"].stale
    assert served(first) == {"package_status", "dp_content_state", "dp_info", "dp_status", "dp_drive", "dp_groups"}
    clock.now = 1171.0
    second = poller.status()
    assert by_name(second)["dp_info"].stale
    assert served(second) == {"package_status", "dp_content_state", "dp_status", "dp_drive", "dp_groups"}
    assert first.generation != second.generation and first.polls == second.polls


def test_a_collector_recovering_serves_its_new_data_and_is_no_longer_stale() -> None:
    clock = Clock()
    source = CollectorsSource(package_info=[[INFO], PollError("connection", "refused"), [INFO._replace(name="new")]])
    poller = TargetPoller(collectors_target(stale_after=10.0), source, monotonic=clock)
    poller.poll_once()
    poller.poll_once()
    clock.now += 11
    assert by_name(poller.status())["package_info"].stale
    poller.poll_once()
    collector = by_name(poller.status())["package_info"]
    assert collector.up and not collector.stale and collector.data is not None
    assert 'name="new"' in collector.data.samples["sccm_package_info"]


def test_a_hanging_collector_times_out_alone_and_the_others_results_are_recorded() -> None:
    source = CollectorsSource(dp_content_state=["hang", [CONTENT]])
    poller = TargetPoller(collectors_target(timeout=0.3), source)
    started = time.monotonic()
    poller.poll_once()
    assert time.monotonic() - started < 0.3 + GRACE + 0.5
    status = poller.status()
    collectors = by_name(status)
    assert status.up and status.polls == 1
    assert not collectors["dp_content_state"].up and collectors["dp_content_state"].errors["timeout"] == 1
    assert collectors["dp_content_state"].last_error == (
        "SMS_PackageStatusDistPointsSummarizer not read within timeout 0.3s"
    )
    assert served(status) == {"package_status", "package_info", "dp_info", "dp_status", "dp_drive", "dp_groups"}

    poller.poll_once()  # its read still hangs: counted again, not started again; the others run
    collectors = by_name(poller.status())
    assert source.reads == Counter({"package_status": 2, "package_info": 2, "dp_info": 2, "dp_content_state": 1,
                                    "dp_status": 2, "dp_drive": 2, "dp_groups": 2})
    assert collectors["dp_content_state"].errors["timeout"] == 2
    assert collectors["dp_content_state"].last_error == (
        "previous read of SMS_PackageStatusDistPointsSummarizer still running past its deadline"
    )
    assert all(sum(c.errors.values()) == 0 for c in collectors.values() if c.name != "dp_content_state")

    source.release.set()  # the hung read gives up; the next poll reads the class again
    (hung,) = source.hung
    hung.join(5)
    poller.poll_once()
    collectors = by_name(poller.status())
    assert collectors["dp_content_state"].up and source.reads["dp_content_state"] == 2
    assert served(poller.status()) == set(COLLECTORS)


def test_several_hanging_collectors_share_one_deadline_and_one_grace() -> None:
    source = CollectorsSource(package_info=["hang"], dp_content_state=["hang"], dp_info=["hang"])
    poller = TargetPoller(collectors_target(timeout=0.2), source)
    started = time.monotonic()
    poller.poll_once()
    took = time.monotonic() - started
    source.release.set()
    assert took < 0.2 + GRACE + 0.3, f"the poll took {took:.2f}s: the grace was waited once per hanging collector"
    status = poller.status()
    assert status.up and [c.name for c in status.collectors if not c.up] == ["package_info", "dp_content_state",
                                                                            "dp_info"]


def test_each_collector_reports_how_long_its_own_read_took() -> None:
    poller = TargetPoller(collectors_target(timeout=5.0), CollectorsSource(dp_info=["sleep"]))
    poller.poll_once()
    status = poller.status()
    durations = {c.name: c.last_duration for c in status.collectors}
    assert all(isinstance(took, float) for took in durations.values())
    assert (durations["dp_info"] or 0) >= 0.2 and (status.last_duration or 0) >= 0.2
    assert (durations["package_status"] or 0) < 0.2


def test_max_rows_fails_only_the_collector_that_exceeds_it() -> None:
    many = [DP._replace(server=f"DP{n}") for n in range(6)]
    poller = TargetPoller(collectors_target(max_rows=5), CollectorsSource(dp_info=[many]))
    poller.poll_once()
    collectors = by_name(poller.status())
    assert [c.name for c in collectors.values() if not c.up] == ["dp_info"]
    assert collectors["dp_info"].last_error == (
        "SMS_DistributionPointInfo gave more than max_rows 5 rows; poll abandoned")


def test_a_target_with_package_status_alone_reads_and_reports_only_that_collector() -> None:
    source = CollectorsSource()
    poller = TargetPoller(collectors_target(frozenset({"package_status"})), source)
    poller.poll_once()
    status = poller.status()
    assert [c.name for c in status.collectors] == ["package_status"]
    assert source.reads == Counter({"package_status": 1})
    assert served(status) == {"package_status"}


def test_a_collector_failure_is_logged_with_its_name(caplog: pytest.LogCaptureFixture) -> None:
    poller = TargetPoller(collectors_target(), CollectorsSource(package_info=[PollError("auth", "denied")]))
    with caplog.at_level(logging.INFO, logger="exporter.poller"):
        poller.poll_once()
    failed = [r for r in caplog.records if r.getMessage() == "collector failed"]
    assert [(r.__dict__["collector"], r.__dict__["reason"], r.__dict__["err"]) for r in failed] == [
        ("package_info", "auth", "denied")
    ]
    assert [r.getMessage() for r in caplog.records].count("poll finished") == 1


def test_package_status_runs_and_sccm_up_follows_it_even_when_a_target_leaves_it_out() -> None:
    source = CollectorsSource(package_status=[PollError("auth", "denied")])
    poller = TargetPoller(collectors_target(frozenset({"dp_info"})), source)
    poller.poll_once()
    status = poller.status()
    assert [c.name for c in status.collectors] == ["package_status", "dp_info"]
    assert not status.up and status.errors["auth"] == 1 and status.data is None
    assert source.reads == Counter({"package_status": 1, "dp_info": 1})
