"""The exporter's own metrics (exporter/runtime.py): what they hold, HELP, their registries, and
what they cost a scrape (the process and Python ones are read at most every `max_age`)."""

from __future__ import annotations

import gzip
import threading

import pytest
from conftest import parse_samples, promtool_check_metrics
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.exposition import build_body, exporter_families
from exporter.gzipsplice import Piece
from exporter.runtime import HTTPMetrics, RuntimeMetrics

# Families this exporter documents and dashboards may use; prometheus_client gives them on Linux.
PROCESS_AND_PYTHON = {
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_cpu_seconds_total",
    "process_start_time_seconds",
    "python_info",
    "python_gc_objects_collected_total",
}


def tail_text(runtime: RuntimeMetrics) -> str:
    """The families as /metrics appends them, as text."""
    return b"".join(
        b"".join(part.chunks) if isinstance(part, Piece) else part for part in runtime.tail()
    ).decode("utf-8")


def test_the_tail_holds_process_python_and_http_families_each_with_help() -> None:
    runtime = RuntimeMetrics()
    runtime.http.count("/metrics", 200)
    text = tail_text(runtime)
    got = parse_samples(text)
    assert set(got) >= PROCESS_AND_PYTHON | {"sccm_exporter_http_requests_total",
                                             "sccm_exporter_http_requests_in_flight"}
    assert got["process_resident_memory_bytes"][()] > 1e6
    assert got["sccm_exporter_http_requests_total"] == {(("code", "200"), ("handler", "/metrics")): 1.0}
    for family in text_string_to_metric_families(text):
        assert family.documentation, family.name
    # prometheus_client's own Counter would add one `_created` gauge per label set: ours does not.
    assert "_created" not in text


def test_requests_are_counted_by_handler_and_code_and_in_flight_goes_up_and_down() -> None:
    http = HTTPMetrics()
    for handler, code in [("/metrics", 200), ("/metrics", 200), ("/probe", 404), ("other", 404), ("/metrics", 503)]:
        http.count(handler, code)

    def samples() -> dict[str, dict[tuple[str, ...], float]]:
        return {m.name: {tuple(s.labels.values()): s.value for s in m.samples} for m in http.collect()}

    assert samples()["sccm_exporter_http_requests"] == {
        ("/metrics", "200"): 2, ("/metrics", "503"): 1, ("/probe", "404"): 1, ("other", "404"): 1}
    with http.in_flight(), http.in_flight():
        assert samples()["sccm_exporter_http_requests_in_flight"] == {(): 2}
    with pytest.raises(RuntimeError), http.in_flight():
        raise RuntimeError("a handler failed")
    assert samples()["sccm_exporter_http_requests_in_flight"] == {(): 0}


def test_each_server_has_its_own_registry_and_the_global_one_is_left_alone() -> None:
    first, second = RuntimeMetrics(), RuntimeMetrics()
    first.http.count("/metrics", 200)
    assert "sccm_exporter_http_requests_total{" in tail_text(first)
    assert "sccm_exporter_http_requests_total{" not in tail_text(second)
    assert b"sccm_exporter_http" not in generate_latest(REGISTRY)


def test_process_families_are_read_at_most_every_max_age_and_http_ones_at_every_call() -> None:
    now = [100.0]
    runtime = RuntimeMetrics(max_age=0.25, clock=lambda: now[0])
    process, http = runtime.tail()
    runtime.http.count("/metrics", 200)
    again, http_again = runtime.tail()
    assert again is process  # the same reading, compressed once
    assert http_again != http and b'handler="/metrics"' in http_again
    now[0] += 0.25
    assert runtime.tail()[0] is not process


def test_scrapers_arriving_together_share_one_reading() -> None:
    runtime = RuntimeMetrics(max_age=60)
    readings: list[Piece] = []
    threads = [threading.Thread(target=lambda: readings.append(runtime.tail()[0])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(reading) for reading in readings}) == 1


def test_promtool_accepts_a_metrics_body_with_the_tail_plain_and_gzip(promtool: str) -> None:
    runtime = RuntimeMetrics()
    for handler, code in [("/metrics", 200), ("/-/ready", 503), ("other", 404)]:
        runtime.http.count(handler, code)
    body = build_body([], exporter_families(True, 1.0)).extended(runtime.tail())
    promtool_check_metrics(promtool, body.text.decode("utf-8"))
    assert gzip.decompress(body.gzipped()) == body.text
