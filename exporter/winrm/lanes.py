"""Parallel enumerations: the pages of several walks, each in a thread of its own, read as they come.

The threads only send, receive and read envelopes (the network waits overlap); the pages' items
are read by the consumer. A bounded queue keeps memory to a few pages per walk. When the consumer
stops for any reason the threads are told to stop (their walks release their enumerations) and
are waited for.
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

T = TypeVar("T")

# A walk: its pages, given the event that asks it to stop between two of them.
Walk = Callable[[threading.Event], Generator[T, None, None]]


@dataclass
class _Lanes(Generic[T]):
    """The pages of the walks, handed from their threads to the consumer's."""

    pages: queue.Queue[tuple[int, T | BaseException | None]]
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
        """One walk, in its own thread: its pages, then None, or its failure."""
        try:
            with closing(walk(self.stop)) as pages:
                for page in pages:
                    if not self.put(lane, page):
                        return  # the consumer is gone; closing the walk releases the context
            self.put(lane, None)
        except BaseException as exc:  # handed to the consumer's thread, which raises it there
            self.put(lane, exc)


def merge(walks: list[Walk[T]], deadline: float, late: Callable[[], PollError], name: str) -> Iterator[tuple[int, T]]:
    """(lane, page) of every walk as the pages arrive; the first failure of any walk is raised.

    `late()` is raised when no page came by the deadline; `name` names the threads.
    """
    lanes: _Lanes[T] = _Lanes(queue.Queue(maxsize=PAGES_AHEAD * len(walks)))
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
