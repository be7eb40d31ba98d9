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
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from datasets import three_site_dataset
from prometheus_client.parser import text_string_to_metric_families
from wsman_server import WSManServer

from exporter.capture import CollectorOutcome, Recorder, Settings, Summary
from exporter.collectors import SPECS
from exporter.collectors.dp_content_state import DPContentRow
from exporter.collectors.dp_drive import DriveRow
from exporter.collectors.dp_groups import GroupRow, MemberRow
from exporter.collectors.dp_info import DPInfoRow
from exporter.collectors.dp_status import DPStatusRow
from exporter.collectors.package_info import PackageInfoRow
from exporter.collectors.package_status.aggregate import PackageStatusAggregate
from exporter.collectors.package_status.pages import PageReader
from exporter.collectors.package_status.row import CLASS_NAME, PackageStatusRow, parse_item
from exporter.collectors.spec import Reader, page_rows
from exporter.config import TargetConfig
from exporter.errors import PollError, Reason
from exporter.exposition import build_body
from exporter.families import Exposition, PerRow
from exporter.poller import CollectorStatus, TargetPoller, TargetStatus
from exporter.sources.demo import (
    content_item,
    dp_item,
    dp_status_item,
    drive_item,
    group_item,
    member_item,
    package_item,
    status_item,
)
from exporter.winrm.pages import RawPage, ReplyPage
from exporter.winrm.source import WinRMSource
from exporter.wmi import Item, ItemsPage, Page, Query, Source

Labels = tuple[tuple[str, str], ...]
Samples = dict[str, dict[Labels, float]]


def instance_of(row: Any) -> Item:
    """A typed row as a provider would send it, such that the collector reads back the row it
    exports: the server where a NAL path would be (test rows need not have a consistent one)."""
    converters: list[tuple[type, Callable[[Any], Item]]] = [
        (PackageStatusRow, status_item), (PackageInfoRow, package_item), (DPContentRow, content_item),
        (DPInfoRow, dp_item), (DPStatusRow, dp_status_item), (DriveRow, drive_item), (GroupRow, group_item),
        (MemberRow, member_item),
    ]
    item = next(convert(row) for kind, convert in converters if isinstance(row, kind))
    for path in ("PkgServer", "ServerNALPath", "NALPath", "DPNALPath"):
        if path in item:
            item[path] = row.server
    return item


class RowsSource:
    """A test double of a source that thinks in typed rows: `rows_of(collector, deadline)` gives a
    collector's rows (lazily: it may raise after some), and they are answered as a provider would,
    as instance text, a page per row, so that the collectors read them as they read any source.
    A collector's rows answer its first class; its other classes (dp_groups' members) have none,
    so that `rows_of` is asked once per poll."""

    def rows_of(self, collector: str, deadline: float) -> Iterator[Any]:
        raise NotImplementedError

    def read(self, query: Query, deadline: float) -> Iterator[Page]:
        collector = next(name for name, spec in SPECS.items()
                         if any(read.query.class_name == query.class_name for read in spec.reads))
        if SPECS[collector].reads[0].query != query:
            return
        for row in self.rows_of(collector, deadline):
            yield ItemsPage([instance_of(row)], lambda index: f"{query.class_name} row")

    def site_code(self) -> str | None:
        return "ABC"

    def close(self) -> None:
        pass


def wait_for_polls(poller: TargetPoller, count: int = 1, timeout: float = 30.0) -> bool:
    """Whether `poller` finished at least `count` polls within `timeout` seconds."""
    end = time.monotonic() + timeout
    while poller.status().polls < count:
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)
    return True


def collector_rows(source: Source, collector: str, deadline: float) -> Iterator[Any]:
    """The rows `collector` reads from `source` in one poll, as they come: what the poller adds up."""
    return Reader(SPECS[collector]).rows(source, deadline)


def poll_collectors(source: Source, collectors: Iterable[str], deadline: float) -> dict[str, CollectorOutcome]:
    """One poll of `collectors` from `source`, read at once as the poller reads them: per collector
    the rows its `Reader` gave and, when it failed, the `PollError`'s reason and message."""

    def read(name: str) -> CollectorOutcome:
        rows = 0
        try:
            for _ in collector_rows(source, name, deadline):
                rows += 1
        except PollError as error:
            return CollectorOutcome(rows, False, error.reason, str(error))
        return CollectorOutcome(rows, True)

    names = list(collectors)
    with ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="collector") as pool:
        futures = {name: pool.submit(read, name) for name in names}
    return {name: future.result() for name, future in futures.items()}


def record_poll(target: TargetConfig, directory: Path, *, property_list: bool = True, anonymize: bool = False,
                seconds: float = 30) -> Summary:
    """Poll the target's collectors once over WinRM, recording the exchanges into `directory`
    (`exporter.capture`) with the poll's summary; the password is the secret scrubbed."""
    auth = target.auth
    recorder = Recorder(directory, anonymize=anonymize, secrets=[auth.password] if auth.password else [],
                        hosts=[target.host] if target.host else [], accounts=[auth.username] if auth.username else [])
    settings = Settings.of(target, property_list=property_list)
    source = WinRMSource(target, property_list=property_list, recorder=recorder)
    try:
        outcomes = poll_collectors(source, settings.collectors, time.monotonic() + seconds)
    finally:
        source.close()
    summary = Summary(settings, outcomes)
    recorder.close(summary)
    return summary


def status_rows(raw: RawPage, site: str = "ABC", reader: PageReader | None = None) -> list[PackageStatusRow]:
    """The SMS_PackageStatus rows of one reply as a poll reads them: by `reader` (the fast way)
    when given and it can, else instance by instance; a row that does not convert is a PollError."""
    return page_rows(ReplyPage(raw, None, CLASS_NAME), parse_item, site, reader)


def render(statuses: list[TargetStatus]) -> str:
    """These targets' families as text, one HELP/TYPE header per family (a /probe body for one)."""
    return b"".join(build_body(statuses).parts).decode("utf-8")


def render_rows(
    target: str, rows: Iterator[PackageStatusRow] | list[PackageStatusRow], per_row: PerRow,
    own_site: str | None = None,
) -> Exposition:
    """Every package_status family of one target from its rows, all at once (polls stream them)."""
    aggregate = PackageStatusAggregate(per_row)
    aggregate.add(rows)
    return aggregate.render(target, own_site)


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

    def __init__(self, name: str, args: list[str], log: Path, ready_url: str, *,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        """`env`: variables added to this process's environment (proxies are left out)."""
        self.name = name
        self.log_path = log
        self.ready_url = ready_url
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        environment = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | (env or {})
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=environment, cwd=cwd)

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
                 command: list[str] | None = None, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        """`tls_ca` and `auth`: how this client reaches an exporter started with --web.config.file.
        `command` runs instead of the installed console script (`python -m exporter` from a copy)."""
        self.port = free_port()
        self.base = f"{'https' if tls_ca else 'http'}://127.0.0.1:{self.port}"
        self.context = ssl.create_default_context(cafile=str(tls_ca)) if tls_ca else None
        self.auth_headers = (
            {"Authorization": "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()} if auth else {}
        )
        super().__init__(
            "exporter",
            [*(command or [console_script()]), "--config.file", str(config),
             "--web.listen-address", f"127.0.0.1:{self.port}", *(extra_args or [])],
            log_path,
            ready_url=f"{self.base}/-/ready",
            env=env,
            cwd=cwd,
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


def key_lines(*paths: str | Path) -> list[str]:
    """The base64 lines of PEM private key files: key material a capture, a log or a page must
    never hold (the BEGIN/END lines are no secret)."""
    return [line for path in paths for line in Path(path).read_text().splitlines() if line and "-----" not in line]


def pytest_configure(config: pytest.Config) -> None:
    """No test may ask a real KDC: the host's /etc/krb5.conf (Debian's names MIT's public realm)
    would send Kerberos and DNS traffic off this machine if anything reached for Kerberos without
    the test realm's configuration (CredSSP tries Kerberos first, for one). This krb5.conf knows
    one realm whose KDC is a closed loopback port; the Kerberos tests set their own."""
    if "KRB5_CONFIG" in os.environ:
        return
    folder = Path(tempfile.mkdtemp(prefix="krb5-offline-"))
    path = folder / "krb5.conf"
    path.write_text(
        "[libdefaults]\n\tdefault_realm = OFFLINE.INVALID\n\tdns_lookup_kdc = false\n"
        "\tdns_lookup_realm = false\n\trdns = false\n\tdns_canonicalize_hostname = false\n"
        "[realms]\n\tOFFLINE.INVALID = {\n\t\tkdc = 127.0.0.1:9\n\t}\n"
    )
    os.environ["KRB5_CONFIG"] = str(path)
    os.environ["KRB5CCNAME"] = f"FILE:{folder / 'no-ccache'}"


# --- Kerberos -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kerberos:
    """The suite's realm (tests/kerberos_realm.py) and what the tests sign in with."""

    realm: Any  # kerberos_realm.Realm
    user: str  # svc-exporter@CORP.EXAMPLE.COM, password `password`
    password: str
    client_keytab: str  # the user's keys, as ktpass exports them
    service_keytab: str  # HTTP/cm01.corp.example.com and WSMAN/cm01.corp.example.com
    spn_host: str

    @property
    def env(self) -> dict[str, str]:
        return dict(self.realm.env)


@pytest.fixture(scope="session")
def kerberos() -> Iterator[Kerberos]:
    """A real MIT KDC on 127.0.0.1 for the session; fails under CI=true when it cannot run."""
    from kerberos_realm import PROVIDER_HOST, Realm, kdc_binary

    missing = []
    if kdc_binary() is None:
        missing.append("krb5kdc (Debian: krb5-kdc krb5-admin-server)")
    for module in ("k5test", "gssapi", "krb5"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the Python package {module}")
    if missing:
        message = f"Kerberos tests need {', '.join(missing)}; the README's test command installs them"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    realm = Realm()
    try:
        password = "Kerb3rosPassw0rd"
        user = realm.add_user("svc-exporter", password)
        service_keytab = realm.add_service(f"HTTP/{PROVIDER_HOST}")
        realm.add_service(f"WSMAN/{PROVIDER_HOST}", service_keytab)
        yield Kerberos(realm, user, password, realm.client_keytab("svc-exporter"), service_keytab, PROVIDER_HOST)
    finally:
        realm.stop()
