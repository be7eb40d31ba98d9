"""What differs on Windows (docs/platforms.md), tested here on Linux: no SIGHUP, and the other
POSIX-only names of the signal module missing. The exporter must start, serve, reload through
POST /-/reload and stop on Ctrl+C (SIGINT) all the same."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StartExporter, console_script, labels

from exporter import cli

NO_SIGHUP = "this platform has no SIGHUP: reload the configuration with POST /-/reload"

# What Windows' signal module has of these kinds of names (every other SIG* name, and the POSIX
# functions below, is missing there).
WINDOWS_SIGNALS = ("SIGABRT", "SIGBREAK", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM")
POSIX_FUNCTIONS = ("alarm", "pause", "setitimer", "getitimer", "siginterrupt", "pthread_kill", "pthread_sigmask",
                   "sigpending", "sigwait", "sigwaitinfo", "sigtimedwait")

# Runs the real command line with the signal module cut down to Windows' names before anything of
# the exporter is imported.
WINDOWS_LIKE = f"""
import signal, sys
for name in dir(signal):
    posix_signal = name.startswith("SIG") and not name.startswith("SIG_") and name not in {WINDOWS_SIGNALS!r}
    if posix_signal or name in {POSIX_FUNCTIONS!r}:
        delattr(signal, name)
assert not hasattr(signal, "SIGHUP")
from exporter.cli import main
sys.exit(main(sys.argv[1:]))
"""


def config(path: Path, *targets: str) -> Path:
    lines = ["defaults: {interval: 1s, timeout: 1s, stale_after: 1m}", "targets:"]
    lines += [f"  - {{name: {name}, source: demo, packages: 5, servers: 2, seed: 7}}" for name in targets]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_without_posix_signals_it_starts_serves_reloads_by_post_and_stops_on_ctrl_c(
    tmp_path: Path, run_exporter: StartExporter
) -> None:
    path = config(tmp_path / "config.yaml", "first")
    exporter = run_exporter(path, command=[sys.executable, "-c", WINDOWS_LIKE])
    exporter.wait_ready()
    assert exporter.samples()["sccm_up"] == {labels(target="first"): 1.0}
    config(path, "first", "second")
    request = urllib.request.Request(exporter.base + "/-/reload", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    got = exporter.wait_for("the second target", lambda s: labels(target="second") in s["sccm_up"])
    assert got["sccm_exporter_config_last_reload_successful"] == {(): 1.0}
    # Ctrl+C, which a service wrapper such as NSSM sends to stop it, arrives as SIGINT.
    exporter.proc.send_signal(signal.SIGINT)
    assert exporter.proc.wait(15) == 0
    log = exporter.log()
    assert log.count(NO_SIGHUP) == 1  # said once, at the start, not again at the reload
    assert "signal=SIGINT" in log and "msg=stopped" in log and "Traceback" not in log


def test_with_sighup_nothing_is_said_about_it(tmp_path: Path, run_exporter: StartExporter) -> None:
    exporter = run_exporter(config(tmp_path / "config.yaml", "first"))
    exporter.wait_ready()
    assert exporter.stop() == 0
    assert "SIGHUP" not in exporter.log()


def test_a_port_in_use_is_a_start_up_failure(tmp_path: Path) -> None:
    # On Windows, SO_REUSEADDR would let a second exporter bind the port beside the first.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([console_script(), "--config.file", str(config(tmp_path / "c.yaml", "one")),
                                 "--web.listen-address", f"127.0.0.1:{port}"], capture_output=True, text=True,
                                timeout=30)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr


# --- the signal handlers themselves, in this process -----------------------------------------


@pytest.fixture
def own_handlers() -> Iterator[None]:
    """pytest's handlers back after the test, whatever the exporter installed."""
    names = [name for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)]
    saved = {name: signal.getsignal(getattr(signal, name)) for name in names}
    try:
        yield
    finally:
        for name, handler in saved.items():
            signal.signal(getattr(signal, name), handler)


def handler(name: str) -> signal.Handlers | object:
    return signal.getsignal(getattr(signal, name))


@pytest.mark.usefixtures("own_handlers")
def test_without_sighup_term_and_int_stop_and_the_log_says_how_to_reload(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hangup_before = signal.getsignal(signal.SIGHUP)
    monkeypatch.delattr(signal, "SIGHUP")
    stopping, reloading = threading.Event(), threading.Event()
    with caplog.at_level(logging.INFO, logger="exporter"):
        cli._handle_signals(stopping, reloading)
    assert [record.getMessage() for record in caplog.records] == [NO_SIGHUP]
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGHUP) is hangup_before  # nothing was installed for it
    on_term = handler("SIGTERM")
    assert callable(on_term) and handler("SIGINT") is on_term
    on_term(signal.SIGTERM, None)
    assert stopping.is_set() and not reloading.is_set()


@pytest.mark.usefixtures("own_handlers")
def test_with_sighup_it_asks_for_a_reload_and_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    stopping, reloading = threading.Event(), threading.Event()
    with caplog.at_level(logging.INFO, logger="exporter"):
        cli._handle_signals(stopping, reloading)
    assert caplog.records == []
    on_hangup = handler("SIGHUP")
    assert callable(on_hangup)
    on_hangup(signal.SIGHUP, None)
    assert reloading.is_set() and not stopping.is_set()
