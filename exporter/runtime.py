"""The exporter's own metrics, on /metrics only: its process, its Python and its HTTP server.

prometheus_client's standard collectors give `process_*` (resident memory, CPU seconds, open file
descriptors; read from /proc, so Linux only) and `python_*` (`python_info`, the garbage
collector's counts); a small collector of ours counts the HTTP requests. They live in registries
that belong to one server, never in prometheus_client's global REGISTRY: two servers in one
process (the tests start many) each count their own requests.

These families are few and change all the time, so they are rendered per scrape and appended to
the cached body (`exposition.Body.extended`). /probe never carries them: a probe answers with its
target's metrics alone, as Prometheus' multi-target exporters do.

Reading /proc and formatting the process and Python families takes about 0.2 ms, as long as the
rest of a gzip scrape of a 10k-row site: measured with benchmarks/load.py, it halved the scrapes
served per second. So they are read at most every `PROCESS_MAX_AGE` seconds and scrapers that
come closer together share one reading; a Prometheus scraping every second or slower always gets
a fresh one. The HTTP families are read at every scrape, so that they count every request
answered before it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.gzipsplice import Piece, piece

REQUESTS = "sccm_exporter_http_requests"  # exposed with the counter's _total suffix
REQUESTS_HELP = "HTTP requests answered by the exporter, by handler (the route; other for any unknown path) and code."
IN_FLIGHT = "sccm_exporter_http_requests_in_flight"
IN_FLIGHT_HELP = "HTTP requests the exporter is serving right now, this scrape included."
PROCESS_MAX_AGE = 0.25  # seconds


class HTTPMetrics(Collector):
    """Requests answered, by handler and status code, and requests being served.

    Not prometheus_client's Counter: that one adds a `_created` gauge series per label set to the
    text format, which nothing here needs and which would double these series.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answered: dict[tuple[str, str], int] = {}
        self._in_flight = 0

    def count(self, handler: str, code: int) -> None:
        """One answer sent; `handler` must come from a fixed set (see `server.handler_label`)."""
        key = (handler, str(code))
        with self._lock:
            self._answered[key] = self._answered.get(key, 0) + 1

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            answered = sorted(self._answered.items())
            in_flight = self._in_flight
        requests = CounterMetricFamily(REQUESTS, REQUESTS_HELP, labels=("handler", "code"))
        for labels, count in answered:
            requests.add_metric(labels, count)
        return [requests, GaugeMetricFamily(IN_FLIGHT, IN_FLIGHT_HELP, value=in_flight)]


class RuntimeMetrics:
    """The registries of one server: HTTP metrics, read at every scrape, and the process and
    Python ones, read at most every `max_age` seconds."""

    def __init__(self, *, max_age: float = PROCESS_MAX_AGE, clock: Callable[[], float] = time.monotonic) -> None:
        # auto_describe: a name registered twice fails here, at start, not in a scrape.
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = HTTPMetrics()
        self.registry.register(self.http)
        self.process_registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.process_registry)
        PlatformCollector(registry=self.process_registry)
        GCCollector(registry=self.process_registry)
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._process_families: Piece | None = None
        self._read_at = 0.0

    def tail(self) -> tuple[Piece, bytes]:
        """What /metrics appends to the targets' body: the process and Python families (a piece,
        compressed once per reading), then the HTTP ones, in the text format."""
        return self._process(), generate_latest(self.registry)

    def _process(self) -> Piece:
        # Under the lock: scrapers arriving together wait for one reading instead of each taking one.
        with self._lock:
            now = self._clock()
            if self._process_families is None or now - self._read_at >= self._max_age:
                self._process_families = piece([generate_latest(self.process_registry)])
                self._read_at = now
            return self._process_families
