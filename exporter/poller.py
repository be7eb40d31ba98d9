"""Background polling of one target: every `interval`, one poll in flight, a deadline of `timeout`.

A scrape never waits on a poll: it reads `TargetPoller.status()`, the result of the last finished
poll. A failed poll keeps the last good exposition until `stale_after` has passed since the last
success; the health values (`sccm_up`, errors by reason) always reflect the latest poll.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.collector import Exposition, PackageStatusAggregate
from exporter.config import TargetConfig
from exporter.errors import REASONS, PollError, Reason
from exporter.rows import PackageStatusRow
from exporter.sources import Source

log = logging.getLogger("exporter.poller")

# How far a poll's start may move from the exact interval, as a fraction of it: targets that
# start together drift apart instead of hitting their providers in step forever.
JITTER = 0.05
# How often (in rows) a long poll looks at its deadline while it consumes rows.
DEADLINE_CHECK_ROWS = 4096


@dataclass(frozen=True)
class TargetStatus:
    """What a scrape needs to know about a target, as of its last finished poll."""

    name: str
    polls: int  # finished polls, successful or not
    up: bool
    last_duration: float | None
    last_success: float | None  # wall-clock Unix seconds of the end of the last good poll
    last_reason: Reason | None
    last_error: str | None
    errors: Mapping[Reason, int]
    data: Exposition | None  # None before the first success and once stale
    stale: bool

    @property
    def generation(self) -> tuple[str, int, bool]:
        """Changes whenever anything a scrape would render for this target changes."""
        return (self.name, self.polls, self.stale)


@dataclass
class _State:
    polls: int = 0
    up: bool = False
    last_duration: float | None = None
    last_success: float | None = None
    last_success_mono: float | None = None
    last_reason: Reason | None = None
    last_error: str | None = None
    errors: dict[Reason, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    data: Exposition | None = None


class TargetPoller:
    """Polls one target's source in the background and keeps the last result."""

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
        self._state = _State()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._finished = threading.Event()  # set after every finished poll, for tests and readiness

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"poll-{self.target.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.source.close()

    def wait_for_poll(self, count: int = 1, timeout: float = 30.0) -> bool:
        """Block until at least `count` polls finished (used by tests and `--check` style runs)."""
        end = self._monotonic() + timeout
        while self.status().polls < count:
            remaining = end - self._monotonic()
            if remaining <= 0:
                return False
            self._finished.wait(min(remaining, 0.1))
            self._finished.clear()
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self._monotonic()
            self.poll_once()
            period = self.target.interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
            self._stop.wait(max(0.0, started + period - self._monotonic()))

    # --- one poll -------------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Run one poll to its end or its deadline and record the outcome."""
        if self._worker is not None and self._worker.is_alive():
            # The previous poll outlived its deadline and is still winding down: never start a
            # second one against the same provider; count this round as another timeout.
            self._record_failure(PollError("timeout", "previous poll still running past its deadline"), 0.0)
            return
        started = self._monotonic()
        deadline = started + self.target.timeout
        outcome: list[Exposition | BaseException] = []
        worker = threading.Thread(
            target=self._collect_into, args=(deadline, outcome), name=f"collect-{self.target.name}", daemon=True
        )
        self._worker = worker
        worker.start()
        worker.join(max(0.0, deadline - self._monotonic()) + 0.5)
        duration = self._monotonic() - started
        if worker.is_alive():
            self._record_failure(
                PollError("timeout", f"poll did not finish within timeout {self.target.timeout:g}s"), duration
            )
            return
        result = outcome[0]
        if isinstance(result, Exposition):
            self._record_success(result, duration)
        else:
            self._record_failure(_as_poll_error(result), duration)

    def _collect_into(self, deadline: float, outcome: list[Exposition | BaseException]) -> None:
        try:
            # Rows are counted in as the source yields them, page by page: a poll never holds
            # the whole table, only what its families need (see PackageStatusAggregate).
            aggregate = PackageStatusAggregate(self.target.per_row)
            aggregate.add(self._within(self.source.rows(deadline), deadline))
            outcome.append(aggregate.render(self.target.name, self.source.site_code()))
        except BaseException as exc:  # every failure of a poll is recorded, none kills the thread
            outcome.append(exc)

    def _within(self, rows: Iterator[PackageStatusRow], deadline: float) -> Iterator[PackageStatusRow]:
        limit = self.target.max_rows
        for count, row in enumerate(rows, 1):
            if count % DEADLINE_CHECK_ROWS == 0 and self._monotonic() > deadline:
                raise PollError("timeout", f"poll did not finish within timeout {self.target.timeout:g}s")
            if count > limit:
                raise PollError("other", f"the source gave more than max_rows {limit} rows; poll abandoned")
            yield row

    def _record_success(self, data: Exposition, duration: float) -> None:
        with self._lock:
            state = self._state
            state.polls += 1
            state.up = True
            state.last_duration = duration
            state.last_success = self._clock()
            state.last_success_mono = self._monotonic()
            state.last_reason = None
            state.last_error = None
            state.data = data
        log.info(
            "poll finished",
            extra={"target": self.target.name, "rows": data.rows, "series": data.series,
                   "duration_seconds": round(duration, 3)},
        )
        self._finished.set()

    def _record_failure(self, error: PollError, duration: float) -> None:
        with self._lock:
            state = self._state
            state.polls += 1
            state.up = False
            state.last_duration = duration
            state.last_reason = error.reason
            state.last_error = str(error)
            state.errors[error.reason] += 1
        log.warning(
            "poll failed",
            extra={"target": self.target.name, "reason": error.reason, "err": str(error),
                   "duration_seconds": round(duration, 3)},
        )
        self._finished.set()

    # --- reading --------------------------------------------------------------------------------

    def status(self) -> TargetStatus:
        with self._lock:
            state = self._state
            stale = self._is_stale(state)
            if stale and state.data is not None:
                state.data = None  # free the rows' text: it will not be served again
            return TargetStatus(
                name=self.target.name,
                polls=state.polls,
                up=state.up,
                last_duration=state.last_duration,
                last_success=state.last_success,
                last_reason=state.last_reason,
                last_error=state.last_error,
                errors=MappingProxyType(dict(state.errors)),
                data=state.data,
                stale=stale,
            )

    def _is_stale(self, state: _State) -> bool:
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
