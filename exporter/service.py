"""The running exporter: one poller per configured target, and what the HTTP layer asks of them."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config import Config
from exporter.exposition import Body, BodyCache
from exporter.poller import TargetPoller, TargetStatus
from exporter.sources import make_source


@dataclass(frozen=True)
class Readiness:
    ready: bool
    waiting_for: tuple[str, ...]


class Exporter:
    """Owns the pollers of one configuration; thread-safe for concurrent scrapes."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pollers = {t.name: TargetPoller(t, make_source(t)) for t in config.targets}
        self._cache = BodyCache()

    def start(self) -> None:
        for poller in self.pollers.values():
            poller.start()

    def stop(self) -> None:
        for poller in self.pollers.values():
            poller.stop()

    def statuses(self) -> list[TargetStatus]:
        return [poller.status() for poller in self.pollers.values()]

    def metrics(self) -> Body:
        """The body of /metrics: every target."""
        return self._cache.get(self.statuses())

    def probe(self, name: str) -> Body | None:
        """The body of /probe?target=NAME, or None when no target has that name."""
        poller = self.pollers.get(name)
        return None if poller is None else self._cache.get([poller.status()])

    def readiness(self) -> Readiness:
        """Ready once every target finished its first poll, whether it succeeded or not."""
        waiting = tuple(s.name for s in self.statuses() if s.polls == 0)
        return Readiness(not waiting, waiting)
