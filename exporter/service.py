"""The running exporter: one poller per configured target, and what the HTTP layer asks of them."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from exporter.config import Config
from exporter.exposition import Body, BodyCache, exporter_families
from exporter.poller import TargetPoller, TargetStatus
from exporter.sources import make_source

log = logging.getLogger("exporter.service")


@dataclass(frozen=True)
class Readiness:
    ready: bool
    waiting_for: tuple[str, ...]


class Exporter:
    """Owns the pollers of one configuration; thread-safe for concurrent scrapes and reloads."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pollers = {t.name: TargetPoller(t, make_source(t)) for t in config.targets}
        self._cache = BodyCache()
        self._reload_lock = threading.Lock()
        self._started = False
        # Like Prometheus' prometheus_config_last_reload_*: the start counts as a successful load.
        self._reload_successful = True
        self._reload_success_time = time.time()
        self._epoch = 0

    def start(self) -> None:
        with self._reload_lock:
            self._started = True
            for poller in self.pollers.values():
                poller.start()

    def stop(self) -> None:
        with self._reload_lock:
            self._started = False
            for poller in self.pollers.values():
                poller.stop()

    def reload(self, config: Config) -> None:
        """Run `config` from now on, keeping the poller (and last data) of every unchanged target.

        A target whose settings are exactly the same keeps polling as before; a removed one is
        stopped; a new or changed one starts with a fresh poller.
        """
        with self._reload_lock:
            old = self.pollers
            new: dict[str, TargetPoller] = {}
            for target in config.targets:
                poller = old.get(target.name)
                new[target.name] = poller if poller is not None and poller.target == target else TargetPoller(
                    target, make_source(target))
            kept = {id(p) for p in new.values()}
            gone = [p for p in old.values() if id(p) not in kept]
            started = [p for p in new.values() if p not in old.values()]
            self.pollers = new  # one assignment: a scrape sees the old set or the new one
            self.config = config
            if self._started:
                for poller in started:
                    poller.start()
            self._reload_successful = True
            self._reload_success_time = time.time()
            self._epoch += 1
        # A stopping poller may wait for its poll thread: never hold up the reload for it.
        for poller in gone:
            threading.Thread(target=poller.stop, name=f"stop-{poller.target.name}", daemon=True).start()
        log.info("configuration reloaded", extra={
            "targets": len(new), "kept": len(new) - len(started), "started": len(started), "stopped": len(gone)})

    def reload_failed(self) -> None:
        """A new configuration was refused: the old one keeps running; the gauge says so."""
        with self._reload_lock:
            self._reload_successful = False
            self._epoch += 1

    @property
    def reload_successful(self) -> bool:
        return self._reload_successful

    def statuses(self) -> list[TargetStatus]:
        return [poller.status() for poller in self.pollers.values()]

    def metrics(self) -> Body:
        """The body of /metrics: every target, then the exporter's own families."""
        extra = exporter_families(self._reload_successful, self._reload_success_time)
        return self._cache.get(self.statuses(), extra, self._epoch)

    def probe(self, name: str) -> Body | None:
        """The body of /probe?target=NAME, or None when no target has that name."""
        poller = self.pollers.get(name)
        return None if poller is None else self._cache.get([poller.status()], epoch=self._epoch)

    def readiness(self) -> Readiness:
        """Ready once every target finished its first poll, whether it succeeded or not."""
        waiting = tuple(s.name for s in self.statuses() if s.polls == 0)
        return Readiness(not waiting, waiting)
