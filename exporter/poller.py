"""Background polling of one target: every `interval`, one poll in flight, a deadline of `timeout`.

A poll runs the target's collectors (exporter.collectors) at once, each reading its class in a
thread of its own against the same deadline, each on its own failure path: one class failing,
hanging or refusing access never hides the others. A scrape never waits on a poll: it reads
`TargetPoller.status()`, the result of the last finished poll. A collector that failed keeps its
last good exposition until `stale_after` has passed since its last success; the health values
(`sccm_up`, `sccm_collector_up`, errors by reason) always reflect the latest poll.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from exporter.collectors import SPECS
from exporter.collectors.spec import CollectorSpec, Reader
from exporter.config import Collector, TargetConfig
from exporter.errors import REASONS, PollError, Reason
from exporter.families import Exposition
from exporter.wmi import Source

log = logging.getLogger("exporter.poller")

# How far a poll's start may move from the exact interval, as a fraction of it: targets that
# start together drift apart instead of hitting their providers in step forever.
JITTER = 0.05
# How often (in rows) a long poll looks at its deadline while it consumes rows.
DEADLINE_CHECK_ROWS = 4096
# How long past the deadline a poll waits for a collector's thread to give up by itself.
GRACE = 0.5


@dataclass(frozen=True)
class CollectorStatus:
    """One collector of a target, as of the target's last finished poll."""

    name: Collector
    up: bool
    last_duration: float | None
    last_reason: Reason | None
    last_error: str | None
    errors: Mapping[Reason, int]
    data: Exposition | None  # None before its first success and once stale
    stale: bool


@dataclass(frozen=True)
class TargetStatus:
    """What a scrape needs to know about a target, as of its last finished poll.

    `collectors` holds every enabled collector, the core one (package_status) first; `up`,
    `errors`, `data` and the rest are the core one's (`sccm_up` follows it). `last_duration` is the whole poll's.
    """

    name: str
    polls: int  # finished polls, successful or not
    last_duration: float | None
    last_success: float | None  # wall-clock Unix seconds of the end of the last good poll
    collectors: tuple[CollectorStatus, ...]  # the core one first
    # The target's configured timing (TargetConfig), served as sccm_target_*_seconds so that alert
    # rules can judge a target's freshness by its own schedule. The defaults are the configuration's,
    # for statuses built without a configuration (tests).
    interval: float = 300.0  # seconds
    stale_after: float = 900.0  # seconds

    @property
    def core(self) -> CollectorStatus:
        return self.collectors[0]

    @property
    def up(self) -> bool:
        return self.core.up

    @property
    def last_reason(self) -> Reason | None:
        return self.core.last_reason

    @property
    def last_error(self) -> str | None:
        return self.core.last_error

    @property
    def errors(self) -> Mapping[Reason, int]:
        return self.core.errors

    @property
    def data(self) -> Exposition | None:
        """The core collector's data: None before the first success and once stale."""
        return self.core.data

    @property
    def stale(self) -> bool:
        return self.core.stale

    @property
    def generation(self) -> tuple[Any, ...]:
        """Changes whenever anything a scrape would render for this target changes."""
        return (self.name, self.polls, tuple(c.stale for c in self.collectors))

    @property
    def exposed(self) -> list[Exposition]:
        """The data to serve: every collector's that has some."""
        return [c.data for c in self.collectors if c.data is not None]


@dataclass
class _CollectorState:
    up: bool = False
    last_duration: float | None = None
    last_success_mono: float | None = None
    last_reason: Reason | None = None
    last_error: str | None = None
    errors: dict[Reason, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    data: Exposition | None = None
    thread: threading.Thread | None = None  # the last read, which may outlive its poll


@dataclass
class _State:
    polls: int = 0
    last_duration: float | None = None
    last_success: float | None = None
    collectors: dict[Collector, _CollectorState] = field(default_factory=dict)


@dataclass
class _Run:
    """One collector's read within a poll: its thread, and what it left when it ended."""

    spec: CollectorSpec
    thread: threading.Thread
    outcome: list[tuple[Exposition | BaseException, float]]


class TargetPoller:
    """Polls one target's source in the background and keeps the last result of each collector."""

    def __init__(
        self,
        target: TargetConfig,
        source: Source,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.target = target
        self.source = source
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        # The core collector always, and first: it is the one sccm_up follows (status() takes the
        # first collector's outcome as the target's), and the first the log names.
        enabled = [spec for spec in SPECS.values() if spec.core or spec.name in target.collectors]
        self._specs: tuple[CollectorSpec, ...] = tuple(sorted(enabled, key=lambda spec: not spec.core))
        # Each collector's reader, kept from poll to poll (its fast readers remember what repeats).
        self._readers = {spec.name: Reader(spec) for spec in self._specs}
        self._state = _State(collectors={spec.name: _CollectorState() for spec in self._specs})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"poll-{self.target.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.source.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self._monotonic()
            self.poll_once()
            period = self.target.interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
            self._stop.wait(max(0.0, started + period - self._monotonic()))

    # --- one poll -------------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Run every collector to its end or the deadline, then record all outcomes at once."""
        started = self._monotonic()
        deadline = started + self.target.timeout
        results: dict[Collector, tuple[Exposition | PollError, float]] = {}
        runs: dict[Collector, _Run] = {}
        for spec in self._specs:
            previous = self._state.collectors[spec.name].thread
            if previous is not None and previous.is_alive():
                # Its last read outlived its deadline and is still winding down: never start a
                # second one against the same provider; count this round as another timeout.
                what = "poll" if spec.core else f"read of {spec.classes}"
                results[spec.name] = (PollError("timeout", f"previous {what} still running past its deadline"), 0.0)
                continue
            runs[spec.name] = self._start(spec, deadline)
        # One grace for the whole poll, not one per collector: several hanging reads end it at
        # the same time as one.
        give_up = deadline + GRACE
        for name, run in runs.items():
            run.thread.join(max(0.0, give_up - self._monotonic()))
            if run.outcome:
                result, ended = run.outcome[0]
                results[name] = (result if isinstance(result, Exposition) else _as_poll_error(result), ended - started)
            else:
                results[name] = (self._late(run.spec), self._monotonic() - started)
        self._record(results, self._monotonic() - started, runs)

    def _start(self, spec: CollectorSpec, deadline: float) -> _Run:
        outcome: list[tuple[Exposition | BaseException, float]] = []
        thread = threading.Thread(
            target=self._collect_into, args=(spec, deadline, outcome), daemon=True,
            name=f"collect-{self.target.name}-{spec.name}",
        )
        thread.start()
        return _Run(spec, thread, outcome)

    def _collect_into(
        self, spec: CollectorSpec, deadline: float, outcome: list[tuple[Exposition | BaseException, float]]
    ) -> None:
        try:
            # Rows are counted in as the source yields them, page by page: a poll never holds
            # the whole table, only what its families need (see the collectors' aggregates).
            aggregate = spec.aggregate(self.target.per_row)
            aggregate.add(self._within(self._readers[spec.name].rows(self.source, deadline), deadline, spec))
            outcome.append((aggregate.render(self.target.name, self.source.site_code()), self._monotonic()))
        except BaseException as exc:  # every failure of a read is recorded, none kills the thread
            outcome.append((exc, self._monotonic()))

    def _within(self, rows: Iterable[Any], deadline: float, spec: CollectorSpec) -> Iterator[Any]:
        limit = self.target.max_rows
        for count, row in enumerate(rows, 1):
            if count % DEADLINE_CHECK_ROWS == 0 and self._monotonic() > deadline:
                raise self._late(spec)
            if count > limit:
                raise PollError(
                    "other", f"{spec.classes} gave more than max_rows {limit} rows; poll abandoned")
            yield row

    def _late(self, spec: CollectorSpec) -> PollError:
        what = "poll did not finish" if spec.core else f"{spec.classes} not read"
        return PollError("timeout", f"{what} within timeout {self.target.timeout:g}s")

    def _record(
        self, results: Mapping[Collector, tuple[Exposition | PollError, float]], duration: float,
        runs: Mapping[Collector, _Run],
    ) -> None:
        """Every collector's outcome in one step, so that a scrape sees one poll or the other."""
        with self._lock:
            state = self._state
            state.polls += 1
            state.last_duration = duration
            for name, (result, took) in results.items():
                collector = state.collectors[name]
                if name in runs:
                    collector.thread = runs[name].thread
                collector.last_duration = took
                if isinstance(result, Exposition):
                    collector.up = True
                    collector.last_success_mono = self._monotonic()
                    collector.last_reason = collector.last_error = None
                    collector.data = result
                    if SPECS[name].core:
                        state.last_success = self._clock()
                else:
                    collector.up = False
                    collector.last_reason = result.reason
                    collector.last_error = str(result)
                    collector.errors[result.reason] += 1
        for name, (result, took) in results.items():
            self._log(name, result, took, duration)

    def _log(self, name: Collector, result: Exposition | PollError, took: float, duration: float) -> None:
        target = self.target.name
        if SPECS[name].core:
            if isinstance(result, Exposition):
                log.info("poll finished", extra={"target": target, "rows": result.rows, "series": result.series,
                                                 "duration_seconds": round(duration, 3)})
            else:
                log.warning("poll failed", extra={"target": target, "reason": result.reason, "err": str(result),
                                                  "duration_seconds": round(duration, 3)})
        elif isinstance(result, Exposition):
            log.info("collector finished", extra={"target": target, "collector": name, "rows": result.rows,
                                                  "series": result.series, "duration_seconds": round(took, 3)})
        else:
            log.warning("collector failed", extra={"target": target, "collector": name, "reason": result.reason,
                                                   "err": str(result), "duration_seconds": round(took, 3)})

    # --- reading --------------------------------------------------------------------------------

    def status(self) -> TargetStatus:
        with self._lock:
            state = self._state
            return TargetStatus(
                name=self.target.name,
                polls=state.polls,
                last_duration=state.last_duration,
                last_success=state.last_success,
                collectors=tuple(self._collector_status(name, c) for name, c in state.collectors.items()),
                interval=self.target.interval,
                stale_after=self.target.stale_after,
            )

    def _collector_status(self, name: Collector, state: _CollectorState) -> CollectorStatus:
        stale = self._is_stale(state)
        if stale and state.data is not None:
            state.data = None  # free the rows' text: it will not be served again
        return CollectorStatus(
            name=name,
            up=state.up,
            last_duration=state.last_duration,
            last_reason=state.last_reason,
            last_error=state.last_error,
            errors=MappingProxyType(dict(state.errors)),
            data=state.data,
            stale=stale,
        )

    def _is_stale(self, state: _CollectorState) -> bool:
        if state.up or state.last_success_mono is None:
            return False
        return self._monotonic() - state.last_success_mono > self.target.stale_after


def _as_poll_error(exc: BaseException) -> PollError:
    if isinstance(exc, PollError):
        return exc
    # A bug or an unexpected library error: counted as `other`, and logged with its type so that
    # it can be reported, but the poll thread and the server go on.
    log.debug("unexpected error in poll", exc_info=exc)
    return PollError("other", f"{type(exc).__name__}: {exc}")
