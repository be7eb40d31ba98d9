"""Polling one target: outcome recording, last good data kept until stale_after, deadlines."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from exporter.config import TargetConfig
from exporter.errors import PollError
from exporter.poller import TargetPoller
from exporter.rows import PackageStatusRow

ROW = PackageStatusRow("ABC", "ABC00001", "DP01", 2, 3, 0, 1.0, "DP01")


class ScriptedSource:
    """A source whose polls follow a script: a list of rows, an exception, or a hang."""

    def __init__(self, *script: list[PackageStatusRow] | BaseException | str) -> None:
        self.script = list(script)
        self.release = threading.Event()
        self.closed = False

    def rows(self, deadline: float) -> Iterator[PackageStatusRow]:
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if step == "hang":
            self.release.wait(10)
            raise PollError("timeout", "released")
        if isinstance(step, BaseException):
            raise step
        assert isinstance(step, list)
        yield from step

    def site_code(self) -> str | None:
        return "ABC"

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def target(**overrides: float) -> TargetConfig:
    values: dict[str, float] = {"interval": 60.0, "timeout": 0.3, "stale_after": 120.0} | overrides
    return TargetConfig(name="abc", source="demo", per_row="all", **values)  # type: ignore[arg-type]


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
    assert poller.wait_for_poll(3, timeout=5)
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
