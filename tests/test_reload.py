"""End to end: configuration reload (SIGHUP, POST /-/reload) and the cap on scrapes at once."""

from __future__ import annotations

import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import HTTPResult, StartExporter, labels

RELOAD_OK = "sccm_exporter_config_last_reload_successful"
RELOAD_TIME = "sccm_exporter_config_last_reload_success_timestamp_seconds"


def config(path: Path, *targets: str) -> Path:
    lines = ["defaults: {interval: 1s, timeout: 1s, stale_after: 1m}", "targets:"]
    lines += [f"  - {{name: {name}, source: demo, packages: 5, servers: 2, seed: 7}}" for name in targets]
    path.write_text("\n".join(lines) + "\n")
    return path


def post(url: str) -> HTTPResult:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return HTTPResult(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return HTTPResult(exc.code, dict(exc.headers), exc.read())


def test_sighup_with_a_changed_config_adds_and_removes_targets_and_keeps_the_unchanged(
    tmp_path: Path, run_exporter: StartExporter
) -> None:
    path = config(tmp_path / "config.yaml", "kept", "removed")
    exporter = run_exporter(path)
    exporter.wait_ready()
    before = exporter.samples()
    assert before[RELOAD_OK] == {(): 1.0}
    config(path, "kept", "added")
    exporter.proc.send_signal(signal.SIGHUP)
    got = exporter.wait_for("the added target", lambda s: labels(target="added") in s["sccm_up"])
    assert labels(target="removed") not in got["sccm_up"]
    assert got[RELOAD_OK] == {(): 1.0}
    assert got[RELOAD_TIME][()] > before[RELOAD_TIME][()]
    # The unchanged target kept its poller: its last success never went back to 0.
    assert got["sccm_last_poll_success_timestamp_seconds"][labels(target="kept")] > 0
    assert "kept=1 started=1 stopped=1" in exporter.log()
    assert exporter.proc.poll() is None


def test_post_with_a_broken_config_keeps_the_old_one_and_sets_the_gauge_to_0(
    tmp_path: Path, run_exporter: StartExporter
) -> None:
    path = config(tmp_path / "config.yaml", "first")
    exporter = run_exporter(path)
    exporter.wait_ready()
    path.write_text("targets:\n  - {name: first, source: demo, intreval: 5s}\n")
    answer = post(exporter.base + "/-/reload")
    assert answer.status == 500 and b"old one keeps running" in answer.body
    got = exporter.samples()
    assert got[RELOAD_OK] == {(): 0.0}
    assert got["sccm_up"] == {labels(target="first"): 1.0}
    assert "targets[0].intreval" in exporter.log()
    # A good file again: taken, gauge back to 1.
    config(path, "first", "second")
    assert post(exporter.base + "/-/reload").status == 200
    got = exporter.wait_for("the second target", lambda s: labels(target="second") in s["sccm_up"])
    assert got[RELOAD_OK] == {(): 1.0}


def test_reload_is_post_only(tmp_path: Path, run_exporter: StartExporter) -> None:
    exporter = run_exporter(config(tmp_path / "config.yaml", "one"))
    answer = exporter.get("/-/reload")
    assert answer.status == 405 and answer.headers["Allow"] == "POST"
    answer = post(exporter.base + "/metrics")
    assert answer.status == 405


def test_scrapes_beyond_max_requests_get_503_at_once(tmp_path: Path, run_exporter: StartExporter) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("targets:\n  - {name: big, source: demo, packages: 1000, servers: 50, seed: 1, "
                    "interval: 1m, timeout: 30s}\n")
    exporter = run_exporter(path, ["--web.max-requests", "1"])
    exporter.wait_ready()
    assert exporter.get("/metrics").status == 200
    # A scraper that sends its request and never reads holds the one slot: the body is far
    # larger than the socket buffers, so the server's write blocks.
    held = socket.create_connection(("127.0.0.1", exporter.port))
    try:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        held.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        started = time.monotonic()
        refused = exporter.get("/metrics")
        assert refused.status == 503 and b"--web.max-requests" in refused.body
        assert time.monotonic() - started < 2
        assert exporter.get("/-/healthy").status == 200  # only scrapes are capped
    finally:
        held.close()
    end = time.monotonic() + 10
    while exporter.get("/metrics").status != 200:  # the slot is freed once that client is gone
        assert time.monotonic() < end
        time.sleep(0.1)
