"""Parallel enumerations: the pages of several walks, each in a thread of its own, read as they come.

The threads only send, receive and read envelopes (the network waits overlap); the pages' items
are read by the consumer. A bounded queue keeps memory to a few pages per walk. When the consumer
stops for any reason the threads are told to stop (their walks release their enumerations) and
are waited for.

The walks start together: each holds its first page until every walk has its own (`_Gate`), so
that a walk failing before its first page (a provider refusing a slice's Enumerate) fails the
merge before any page was handed on; the caller can then read the same rows another way, exactly.
The wait costs little: the walks' first requests are sent at once, and the first reply of an
enumeration is small.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from exporter.errors import PollError

# Pages read ahead per walk while the consumer reads the previous ones.
PAGES_AHEAD = 2
# How long past the deadline the consumer waits for a page or a thread: a walk's last request
# (a Release) may still be under way.
LATE = 3.0
# How often a walk waiting for the others' first pages looks whether the consumer stopped.
GATE_POLL = 0.1

T = TypeVar("T")

# A walk: its pages, given the event that asks it to stop between two of them.
Walk = Callable[[threading.Event], Generator[T, None, None]]


class _Gate:
    """The walks' first pages, held until every walk has one, or given up when one walk failed first."""

    def __init__(self, walks: int) -> None:
        self._changed = threading.Condition()
        self._waiting = walks
        self._failed = False

    def failed(self) -> None:
        """A walk failed before its first page: the others hand on none."""
        with self._changed:
            self._failed = True
            self._changed.notify_all()

    def passed(self, stop: threading.Event) -> bool:
        """A walk has its first page (or ended without one): True once every walk has, False when
        one failed first (its failure is what the consumer gets) or the consumer stopped."""
        with self._changed:
            self._waiting -= 1
            self._changed.notify_all()
            while self._waiting and not self._failed and not stop.is_set():
                self._changed.wait(GATE_POLL)
            return not self._failed and not stop.is_set()


@dataclass
class _Lanes(Generic[T]):
    """The pages of the walks, handed from their threads to the consumer's."""

    pages: queue.Queue[tuple[int, T | BaseException | None]]
    gate: _Gate
    stop: threading.Event = field(default_factory=threading.Event)

    def put(self, lane: int, item: T | BaseException | None) -> bool:
        """Hand over one item; False when the consumer stopped (then nobody will read it)."""
        while not self.stop.is_set():
            try:
                self.pages.put((lane, item), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self, lane: int, walk: Walk[T]) -> None:
        """One walk, in its own thread: its pages (the first once every walk has one), then None,
        or its failure."""
        gate: _Gate | None = self.gate  # None once passed
        try:
            with closing(walk(self.stop)) as pages:
                for page in pages:
                    if gate is not None:
                        if not gate.passed(self.stop):
                            return  # another walk failed first, or the consumer is gone
                        gate = None
                    if not self.put(lane, page):
                        return  # the consumer is gone; closing the walk releases the context
                if gate is not None and not gate.passed(self.stop):
                    return
            self.put(lane, None)
        except BaseException as exc:  # handed to the consumer's thread, which raises it there
            if gate is not None:
                gate.failed()
            self.put(lane, exc)


def merge(walks: list[Walk[T]], deadline: float, late: Callable[[], PollError], name: str) -> Iterator[tuple[int, T]]:
    """(lane, page) of every walk as the pages arrive; the first failure of any walk is raised.

    No page is given before every walk has its first one: a walk failing before its first page
    is raised before any page was given. `late()` is raised when no page came by the deadline;
    `name` names the threads.
    """
    lanes: _Lanes[T] = _Lanes(queue.Queue(maxsize=PAGES_AHEAD * len(walks)), _Gate(len(walks)))
    threads = [
        threading.Thread(target=lanes.run, args=(lane, walk), daemon=True, name=f"{name}-{lane + 1}")
        for lane, walk in enumerate(walks)
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            try:
                lane, item = lanes.pages.get(timeout=max(0.0, deadline - time.monotonic()) + LATE)
            except queue.Empty:
                raise late() from None
            if item is None:
                running -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            yield lane, item
    finally:
        lanes.stop.set()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()) + LATE)
