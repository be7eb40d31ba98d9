"""Shared fixtures: the installed exporter as a subprocess, scraping, and promtool.

Real components are required under CI=true: a missing promtool fails the run there instead of
skipping, so that a green CI always means the real check ran.
"""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from datasets import three_site_dataset
from prometheus_client.parser import text_string_to_metric_families
from wsman_server import WSManServer

from exporter.errors import Reason
from exporter.families import Exposition
from exporter.poller import CollectorStatus, TargetStatus

Labels = tuple[tuple[str, str], ...]
Samples = dict[str, dict[Labels, float]]


def require_tool(name: str) -> str:
    """Path to a real tool; fail under CI=true when missing, skip on a developer's machine."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian: apt-get install prometheus); the README's test command installs it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def console_script() -> str:
    """The installed `sccm-package-exporter` next to this interpreter (what a user runs)."""
    script = Path(sys.executable).with_name("sccm-package-exporter")
    if not script.exists():
        pytest.fail(f"console script not installed at {script}: pip install -e '.[test]'")
    return str(script)


def parse_samples(text: str) -> Samples:
    """family sample name -> sorted labels -> value."""
    parsed: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            parsed.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return parsed


def labels(**kwargs: str) -> Labels:
    return tuple(sorted(kwargs.items()))


@dataclass
class HTTPResult:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0,
             context: ssl.SSLContext | None = None) -> HTTPResult:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return HTTPResult(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return HTTPResult(exc.code, dict(exc.headers), exc.read())


class Server:
    """A child process on loopback with its log in a file, ready once a URL answers 200; `stop()` ends it."""

    def __init__(self, name: str, args: list[str], log: Path, ready_url: str) -> None:
        self.name = name
        self.log_path = log
        self.ready_url = ready_url
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def status_of(self, url: str) -> int:
        """How this process answers `url`; a subclass adds TLS or credentials."""
        return http_get(url, timeout=2).status

    def wait_for_url(self, url: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if self.status_of(url) == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{url} not 200 within {timeout}s:\n{self.log()[-4000:]}")

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait_for_url(self.ready_url, timeout)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class ExporterProcess(Server):
    """`sccm-package-exporter` run as a user runs it, on a free loopback port."""

    def __init__(self, config: Path, log_path: Path, extra_args: list[str] | None = None, *,
                 tls_ca: Path | None = None, auth: tuple[str, str] | None = None,
                 launcher: list[str] | None = None) -> None:
        """`tls_ca` and `auth`: how this client reaches an exporter started with --web.config.file.
        `launcher`: the command in place of the console script, taking the same arguments."""
        self.port = free_port()
        self.base = f"{'https' if tls_ca else 'http'}://127.0.0.1:{self.port}"
        self.context = ssl.create_default_context(cafile=str(tls_ca)) if tls_ca else None
        self.auth_headers = (
            {"Authorization": "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()} if auth else {}
        )
        super().__init__(
            "exporter",
            [*(launcher or [console_script()]), "--config.file", str(config),
             "--web.listen-address", f"127.0.0.1:{self.port}", *(extra_args or [])],
            log_path,
            ready_url=f"{self.base}/-/ready",
        )
        self.wait_for_url(f"{self.base}/-/healthy", 20)

    def status_of(self, url: str) -> int:
        return http_get(url, self.auth_headers, timeout=2, context=self.context).status

    def get(self, path: str, headers: dict[str, str] | None = None) -> HTTPResult:
        return http_get(self.base + path, {**self.auth_headers, **(headers or {})}, context=self.context)

    def scrape(self, path: str = "/metrics") -> str:
        result = self.get(path)
        assert result.status == 200, result.text
        return result.text

    def samples(self, path: str = "/metrics") -> Samples:
        return parse_samples(self.scrape(path))

    def wait_for(self, predicate: str, check: object, timeout: float = 30) -> Samples:
        """Scrape until `check(samples)` is true; returns the samples that satisfied it."""
        assert callable(check)
        end = time.monotonic() + timeout
        samples: Samples = {}
        while time.monotonic() < end:
            samples = self.samples()
            if check(samples):
                return samples
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {predicate}; last scrape: {samples}\nlog:\n{self.log()}")


StartExporter = Callable[..., ExporterProcess]


@pytest.fixture
def run_exporter(tmp_path: Path) -> Iterator[StartExporter]:
    """Start exporters with `run_exporter(config_path, [extra flags])`; each is stopped after the test."""
    started: list[ExporterProcess] = []

    def start(config: Path, extra_args: list[str] | None = None, **client: Any) -> ExporterProcess:
        process = ExporterProcess(config, tmp_path / f"exporter-{len(started)}.log", extra_args, **client)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def promtool_check_metrics(promtool: str, text: str) -> None:
    """`promtool check metrics` must accept the exposition (lint warnings included)."""
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def gunzip(data: bytes) -> str:
    return gzip.decompress(data).decode("utf-8")


def target_status(name: str, polls: int, up: bool, last_duration: float | None, last_success: float | None,
                  last_reason: Reason | None, last_error: str | None, errors: dict[Reason, int],
                  data: Exposition | None, stale: bool, *others: CollectorStatus) -> TargetStatus:
    """A target's status as the poller builds it, from its package_status outcome (then `others`)."""
    core = CollectorStatus("package_status", up, last_duration, last_reason, last_error, errors, data, stale)
    return TargetStatus(name, polls, last_duration, last_success, (core, *others))


@pytest.fixture(scope="module")
def dataset() -> dict[str, Any]:
    """The suite's three sites (tests/datasets.py), every class of each."""
    return three_site_dataset()


@pytest.fixture
def provider(dataset: dict[str, Any]) -> Iterator[WSManServer]:
    """A loopback WS-Management server serving `dataset`, stopped after the test."""
    with WSManServer(dataset) as server:
        yield server
