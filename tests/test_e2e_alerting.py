"""End to end, on loopback: the installed exporter serving a site with failures and a healthy site,
a real Prometheus loading the shipped rules and scraping it as prometheus.example.yml does (both
the /metrics job and the /probe job with its relabelling), a real Alertmanager routed as
alertmanager.example.yml routes, and a webhook receiver.

The site with failures is read over WinRM from the loopback WS-Management server with every
collector on, so that alerts carry package names and every dashboard panel has data: its
SMS_PackageBaseclass lacks one package (UNNAMED_PACKAGE) and its SMS_DistributionPointInfo one DP
(DP05). The healthy site is a `file` target (package_status only: no names at all), and `partial`
a WinRM site whose provider has no SMS_DistributionPointInfo (dp_info fails, the rest works).

The only change to the shipped files: every `for:` of alerts.yml is set to FOR_IN_TEST in a
temporary copy (the real durations are covered by alerts.test.yml), and the scrape and evaluation
intervals are 1s. Every process is stopped by the module fixture, also when a test fails.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from conftest import Server, console_script, free_port, http_get, require_tool
from dashboard_model import (
    ALERTS,
    ALL,
    PROMETHEUS_DIR,
    ROOT,
    RULES,
    example_prometheus_config,
    label_values_query,
    load_dashboard,
    outer_join,
    queries,
    substitute,
    variables,
)
from datasets import (
    DP_CONTENT_SUMMARIZER,
    DP_DRIVE,
    DP_GROUP,
    DP_GROUP_MEMBERS,
    DP_INFO,
    DP_STATUS,
    PACKAGE_BASECLASS,
    PACKAGE_STATUS,
    dp_host,
    nal_path,
    package_id,
    site_namespace,
    site_server,
)
from wsman_server import DEFAULT_USERS, WSManServer

FOR_IN_TEST = "10s"
USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
SENT, RECEIVED, INSTALLED, RETRY, FAILED, REMOVED, PENDING_REMOVE = 1, 2, 3, 4, 5, 6, 7
MASTER, COPY = 1, 2

T = TypeVar("T")

# --- the data sets -------------------------------------------------------------------------------

FAILING_SITE, HEALTHY_SITE, PARTIAL_SITE = "ABC", "DEF", "GHI"
BROKEN_DP = dp_host(FAILING_SITE, 3)
BROKEN_PACKAGE = "ABC00020"
FAILING_PACKAGES = [package_id(FAILING_SITE, i) for i in range(0x26)]  # ABC00010 .. ABC00035
HEALTHY_PACKAGES = [package_id(HEALTHY_SITE, i) for i in range(12)]
PARTIAL_PACKAGES = [package_id(PARTIAL_SITE, i) for i in range(6)]
# Names of the failing site's packages in SMS_PackageBaseclass, which lacks UNNAMED_PACKAGE.
PACKAGE_NAMES = {"ABC00011": 'Office 365 "Monthly" & Visio', "ABC00013": "Windows 11 23H2 upgrade",
                 BROKEN_PACKAGE: "Firefox ESR"}
UNNAMED_PACKAGE = "ABC00012"
FACTLESS_DP = dp_host(FAILING_SITE, 5)  # not in SMS_DistributionPointInfo
# SMS_PackageStatus Status -> the console state of SMS_PackageStatusDistPointsSummarizer (a removed
# package has no summarizer row on the DP).
CONSOLE_STATE = {INSTALLED: 0, SENT: 1, RECEIVED: 1, RETRY: 2, FAILED: 3, PENDING_REMOVE: 4}


def dmtf(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S.%f") + "+000"


def site_rows(site: str, packages: list[str], dps: int, changes: dict[tuple[str, int], tuple[int, timedelta]],
              now: datetime, stamp: Callable[[datetime], Any] = dmtf) -> list[dict[str, Any]]:
    """A MASTER row per package and a COPY row per package and DP, installed 10 days ago, except
    `changes`: (package, DP number) -> (status, how long ago it was set). `stamp` writes UpdateTime:
    a DMTF string for a file, the datetime itself for the WS-Management server."""
    rows = []
    for pkg in packages:
        rows.append({"PackageID": pkg, "PkgServer": nal_path(site_server(site), site), "SiteCode": site,
                     "Status": INSTALLED, "Type": MASTER, "Personality": 0,
                     "UpdateTime": stamp(now - timedelta(days=10))})
        for dp in range(1, dps + 1):
            status, age = changes.get((pkg, dp), (INSTALLED, timedelta(days=10)))
            rows.append({"PackageID": pkg, "PkgServer": nal_path(dp_host(site, dp), site), "SiteCode": site,
                         "Status": status, "Type": COPY, "Personality": 0, "UpdateTime": stamp(now - age)})
    return rows


def as_is(when: datetime) -> datetime:
    return when


def package_info_rows(packages: list[str], now: datetime) -> list[dict[str, Any]]:
    """SMS_PackageBaseclass: a name, version, type, size and source for each package."""
    return [{"PackageID": pkg, "Name": PACKAGE_NAMES.get(pkg, f"Tools {pkg[-2:]}"), "Version": f"1.{index}",
             "PackageType": 259 if pkg == "ABC00013" else 0, "SourceVersion": 2 + index % 3,
             "SourceDate": now - timedelta(days=30 + index), "PackageSize": 1024 * (index + 1)}
            for index, pkg in enumerate(packages)]


def dp_info_rows(site: str, dps: list[int]) -> list[dict[str, Any]]:
    """SMS_DistributionPointInfo: DP01 answers PXE, DP02 is a pull DP, DP04 faces the internet."""
    return [{"NALPath": nal_path(dp_host(site, dp), site), "ServerName": dp_host(site, dp), "SiteCode": site,
             "IsPullDP": dp == 2, "IsPXE": dp == 1, "IsMulticast": False, "IsPeerDP": False,
             "InternetFacing": dp == 4, "GroupCount": dp % 3}
            for dp in dps]


GIB_IN_KB = 1024 * 1024
FULL_DRIVE = "D:"  # of BROKEN_DP: 3 GiB free of 500 (under 5 % and 10 GiB)
OUT_OF_SYNC_GROUP = ("{ABC00002-0000-4000-8000-000000000002}", 'Region "North" & DR')


def dp_status_rows(site: str, dps: list[int], error: int | None) -> list[dict[str, Any]]:
    """SMS_DPStatusInfo: every DP in success, but `error` (the console shows it red)."""
    return [{"NALPath": nal_path(dp_host(site, dp), site), "Name": dp_host(site, dp),
             "MessageState": 3 if dp == error else 1, "LastStatusTime": datetime.now(UTC),
             "NumberErrors": 4 if dp == error else 0, "NumberInProgress": 0, "NumberInstalled": 30,
             "NumberUnknown": 0, "IsDPMonEnabled": True}
            for dp in dps]


def dp_drive_rows(site: str, dps: list[int], full: int | None) -> list[dict[str, Any]]:
    """SMS_DistributionPointDriveInfo: C: and D: per DP, in KB, with room; `full`'s D: nearly full."""
    rows = []
    for dp in dps:
        for drive, total in (("C:", 127 * GIB_IN_KB), (FULL_DRIVE, 500 * GIB_IN_KB)):
            free = 3 * GIB_IN_KB if (dp, drive) == (full, FULL_DRIVE) else total // 2
            rows.append({"NALPath": nal_path(dp_host(site, dp), site), "SiteCode": site, "Drive": drive,
                         "BytesFree": free, "BytesTotal": total})
    return rows


def dp_group_rows(site: str, dps: list[int], out_of_sync: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """SMS_DistributionPointGroup and SMS_DPGroupMembers: "All DPs" in sync, and a region group of
    the first two DPs, out of sync when `out_of_sync`."""
    all_dps = ("{ABC00001-0000-4000-8000-000000000001}", "All DPs")
    region = (OUT_OF_SYNC_GROUP[0], OUT_OF_SYNC_GROUP[1])
    groups = [{"GroupID": group_id, "Name": name, "MemberCount": len(members), "ContentCount": 20,
               "OutOfSyncContentCount": 2 if out_of_sync and group_id == region[0] else 0}
              for (group_id, name), members in ((all_dps, dps), (region, dps[:2]))]
    members = [{"GroupID": group_id, "DPNALPath": nal_path(dp_host(site, dp), site)}
               for (group_id, _), group_dps in ((all_dps, dps), (region, dps[:2])) for dp in group_dps]
    return groups, members


def dp_classes(site: str, dps: list[int], *, broken: int | None) -> dict[str, list[dict[str, Any]]]:
    """The DP collectors' classes of a site; with `broken`, that DP is in error with a full drive and
    the region group is out of sync."""
    groups, members = dp_group_rows(site, dps, broken is not None)
    return {DP_STATUS: dp_status_rows(site, dps, broken), DP_DRIVE: dp_drive_rows(site, dps, broken),
            DP_GROUP: groups, DP_GROUP_MEMBERS: members}


def dp_content_rows(status_rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """SMS_PackageStatusDistPointsSummarizer: the console state of each COPY row, last copied at its UpdateTime."""
    return [{"PackageID": row["PackageID"], "ServerNALPath": row["PkgServer"], "SiteCode": row["SiteCode"],
             "State": CONSOLE_STATE[row["Status"]], "PackageType": 0, "SourceVersion": 2,
             "LastCopied": row["UpdateTime"], "SummaryDate": now}
            for row in status_rows if row["Type"] == COPY and row["Status"] in CONSOLE_STATE]


def failing_site(now: datetime, stamp: Callable[[datetime], Any] = dmtf) -> list[dict[str, Any]]:
    hours = timedelta(hours=1)
    changes = {
        # DP03 is broken: six packages failed or retrying on it.
        **{(pkg, 3): (FAILED, 2 * hours) for pkg in ("ABC00030", "ABC00031", "ABC00032", "ABC00033")},
        ("ABC00034", 3): (RETRY, 2 * hours), ("ABC00035", 3): (RETRY, 2 * hours),
        # ABC00020 is broken: failed or retrying on three DPs.
        (BROKEN_PACKAGE, 1): (FAILED, 3 * hours), (BROKEN_PACKAGE, 2): (FAILED, 3 * hours),
        (BROKEN_PACKAGE, 4): (RETRY, 3 * hours),
        # Alone: one failure, one retry, one sent three days ago; the rest is fine.
        ("ABC00011", 1): (FAILED, 2 * hours),
        ("ABC00012", 2): (RETRY, 5 * hours),
        ("ABC00013", 4): (SENT, timedelta(days=3)),
        ("ABC00014", 2): (RECEIVED, hours),
        ("ABC00015", 5): (PENDING_REMOVE, 2 * hours),
        ("ABC00016", 5): (REMOVED, 20 * hours),
    }
    return site_rows(FAILING_SITE, FAILING_PACKAGES, 5, changes, now, stamp)


def healthy_site(now: datetime) -> list[dict[str, Any]]:
    changes = {("DEF00011", 1): (SENT, timedelta(minutes=10)), ("DEF00012", 2): (REMOVED, timedelta(days=2))}
    return site_rows(HEALTHY_SITE, HEALTHY_PACKAGES, 3, changes, now)


def provider_dataset(now: datetime) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """What the loopback SMS Provider serves: the failing site with every class (one package and one
    DP missing from the optional ones), and the partial site without SMS_DistributionPointInfo."""
    failing = failing_site(now, as_is)
    return {
        site_namespace(FAILING_SITE): {
            PACKAGE_STATUS: failing,
            PACKAGE_BASECLASS: package_info_rows([p for p in FAILING_PACKAGES if p != UNNAMED_PACKAGE], now),
            DP_INFO: dp_info_rows(FAILING_SITE, [1, 2, 3, 4]),
            DP_CONTENT_SUMMARIZER: dp_content_rows(failing, now),
            **dp_classes(FAILING_SITE, [1, 2, 3, 4, 5], broken=3),
        },
        site_namespace(PARTIAL_SITE): {
            PACKAGE_STATUS: site_rows(PARTIAL_SITE, PARTIAL_PACKAGES, 2, {}, now, as_is),
            PACKAGE_BASECLASS: package_info_rows(PARTIAL_PACKAGES, now),
            **dp_classes(PARTIAL_SITE, [1, 2], broken=None),
        },
    }


def label_set(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


# (alertname, the labels that identify it) expected to fire, and nothing else.
EXPECTED = {
    ("SCCMDistributionPointFailing", label_set(target="failing", site="ABC", server=BROKEN_DP)),
    ("SCCMPackageFailingOnManyDPs", label_set(target="failing", site="ABC", package_id=BROKEN_PACKAGE)),
    ("SCCMPackageDistributionFailed", label_set(target="failing", site="ABC", package_id="ABC00011",
                                                server=dp_host("ABC", 1))),
    ("SCCMPackageRetrying", label_set(target="failing", site="ABC", package_id="ABC00012", server=dp_host("ABC", 2))),
    ("SCCMContentStuckInFlight", label_set(target="failing", site="ABC", package_id="ABC00013",
                                           server=dp_host("ABC", 4))),
    ("SCCMTargetDown", label_set(target="broken")),
    ("SCCMStatusStale", label_set(target="broken")),
    ("SCCMPollsFailing", label_set(target="broken", reason="other")),
    ("SCCMCollectorFailing", label_set(target="partial", collector="dp_info")),
    ("SCCMDistributionPointStatusError", label_set(target="failing", site="ABC", server=BROKEN_DP, state="error")),
    ("SCCMDistributionPointDiskFull", label_set(target="failing", site="ABC", server=BROKEN_DP, drive=FULL_DRIVE)),
    ("SCCMDistributionPointDiskLow", label_set(target="failing", site="ABC", server=BROKEN_DP, drive=FULL_DRIVE)),
    ("SCCMDPGroupOutOfSync", label_set(target="failing", group_id=OUT_OF_SYNC_GROUP[0])),
}
# Inhibited in alertmanager.example.yml (by SCCMTargetDown, by SCCMDistributionPointDiskFull): each
# may reach the webhook before the alert that inhibits it fires.
INHIBITED = {"SCCMPollsFailing", "SCCMDistributionPointDiskLow"}
PER_ROW_ALERTS = {"SCCMPackageDistributionFailed", "SCCMPackageRetrying", "SCCMContentStuckInFlight"}


AlertKey = tuple[str, frozenset[tuple[str, str]]]


def key(alert: dict[str, Any]) -> AlertKey:
    """An alert's name and its identifying labels (all but severity, job, instance and the row's details)."""
    labels = alert["labels"]
    ignore = {"alertname", "alertstate", "severity", "job", "instance", "type", "status", "personality"}
    return labels["alertname"], frozenset((k, v) for k, v in labels.items() if k not in ignore)


# --- processes and the webhook -------------------------------------------------------------------


class Webhook:
    """Alertmanager's webhook receiver: keeps every notification it is sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._payloads: list[dict[str, Any]] = []
        received = self._received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)
        self._thread.start()

    def _received(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self._payloads.append(payload)

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """(receiver, alert) for every alert of every notification, in arrival order."""
        with self._lock:
            return [(p["receiver"], alert) for p in self._payloads for alert in p["alerts"]]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class Stack:
    prometheus: str
    alertmanager: str
    webhook: Webhook
    metrics_exporter: str  # host:port of the exporter scraped on /metrics
    servers: list[Server] = field(default_factory=list)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.prometheus}{path}?{urllib.parse.urlencode(params)}"
        result = http_get(url, timeout=10)
        assert result.status == 200, f"{url}: {result.status} {result.text}"
        body = json.loads(result.body)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.log()}" for s in self.servers)


def eventually(check: Callable[[], T | None], what: str, stack: Stack, timeout: float = 90) -> T:
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{stack.logs()}")
        time.sleep(0.5)


# --- configuration derived from the shipped files ------------------------------------------------


def rules_with_short_for(path: Path, to: Path) -> Path:
    """alerts.yml with every `for:` set to FOR_IN_TEST; nothing else changes."""
    document = yaml.safe_load(path.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR_IN_TEST
    to.write_text(yaml.safe_dump(document, sort_keys=False))
    return to


def prometheus_config(tmp: Path, exporter: str, probe_exporter: str, alertmanager: str) -> Path:
    # The example's /metrics job and its commented-out /probe job, uncommented: each job scrapes an
    # exporter of its own here, so no series is stored twice.
    config = yaml.safe_load(example_prometheus_config(probe_job=True))
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    local = {"rules.yml": shutil.copy(RULES, tmp / "rules.yml"),
             "alerts.yml": rules_with_short_for(ALERTS, tmp / "alerts.yml")}
    config["rule_files"] = [str(local[name]) for name in config["rule_files"]]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["sccm"]["static_configs"] = [{"targets": [exporter]}]
    probe = jobs["sccm-probe"]
    probe["static_configs"] = [{"targets": ["healthy"]}]
    [address] = [r for r in probe["relabel_configs"] if r.get("target_label") == "__address__"]
    address["replacement"] = probe_exporter
    for job in jobs.values():
        job["scrape_timeout"] = "1s"
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def alertmanager_config(tmp: Path, webhook: str) -> Path:
    config = yaml.safe_load((PROMETHEUS_DIR / "alertmanager.example.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    config["receivers"] = [{"name": r["name"], "webhook_configs": [{"url": webhook, "send_resolved": True}]}
                           for r in config["receivers"]]
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def exporter_config(tmp: Path, name: str, targets: dict[str, Path], winrm: dict[str, str] | None = None,
                    provider_port: int = 0) -> Path:
    """File targets (`targets`: name -> path), and WinRM targets of the loopback provider (`winrm`:
    name -> site code; `failing` with every collector, the others with the default ones)."""
    secret = tmp / "cm_password"
    secret.write_text(PASSWORD + "\n")
    lines = ["defaults: {interval: 2s, timeout: 1s, stale_after: 1m}", "targets:"]
    lines += [f"  - {{name: {target}, source: file, path: '{path}'}}" for target, path in targets.items()]
    for target, site in (winrm or {}).items():
        every = (", collectors: [package_status, package_info, dp_info, dp_content_state, dp_status, dp_drive, "
                 "dp_groups]") if target == "failing" else ""
        lines += [f"  - {{name: {target}, source: winrm, host: 127.0.0.1, port: {provider_port}, scheme: http,",
                  f"     site_code: {site}, interval: 4s, timeout: 3s{every},",
                  f"     auth: {{transport: ntlm, username: '{USER}', password_file: {secret}}}}}"]
    path = tmp / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = require_tool("prometheus")
    alertmanager = require_tool("prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("alerting")
    now = datetime.now(UTC)
    (tmp / "healthy.json").write_text(json.dumps(healthy_site(now)))
    with ExitStack() as cleanup:
        provider = cleanup.enter_context(WSManServer(provider_dataset(now)))
        servers: list[Server] = []

        def start(name: str, args: list[str], port: int, ready: str) -> Server:
            server = Server(name, args, tmp / f"{name}.log", f"http://127.0.0.1:{port}{ready}")
            cleanup.callback(server.stop)
            servers.append(server)
            return server

        webhook = Webhook()
        cleanup.callback(webhook.close)
        ports = {name: free_port() for name in ("exporter", "probe-exporter", "alertmanager", "prometheus")}
        # /metrics: the site with failures and the partial site over WinRM, and a target whose
        # file is missing (polls fail).
        metrics_config = exporter_config(tmp, "exporter", {"broken": tmp / "missing.json"},
                                         {"failing": FAILING_SITE, "partial": PARTIAL_SITE}, provider.port)
        start("exporter", [console_script(), "--config.file", str(metrics_config),
                           "--web.listen-address", f"127.0.0.1:{ports['exporter']}"], ports["exporter"], "/-/ready")
        # /probe: the healthy site.
        probe_config = exporter_config(tmp, "probe-exporter", {"healthy": tmp / "healthy.json"})
        start("probe-exporter", [console_script(), "--config.file", str(probe_config),
                                 "--web.listen-address", f"127.0.0.1:{ports['probe-exporter']}"],
              ports["probe-exporter"], "/-/ready")
        start("alertmanager", [alertmanager, f"--config.file={alertmanager_config(tmp, webhook.url)}",
                               f"--storage.path={tmp / 'alertmanager-data'}",
                               f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                               "--cluster.listen-address="], ports["alertmanager"], "/-/ready")
        config = prometheus_config(tmp, f"127.0.0.1:{ports['exporter']}", f"127.0.0.1:{ports['probe-exporter']}",
                                   f"127.0.0.1:{ports['alertmanager']}")
        start("prometheus", [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                             f"--web.listen-address=127.0.0.1:{ports['prometheus']}"],
              ports["prometheus"], "/-/ready")
        for server in servers:
            server.wait_ready()
        yield Stack(f"http://127.0.0.1:{ports['prometheus']}", f"http://127.0.0.1:{ports['alertmanager']}",
                    webhook, f"127.0.0.1:{ports['exporter']}", servers)


def wait_until_expected_alerts_fire(stack: Stack) -> dict[AlertKey, dict[str, Any]]:
    def firing() -> dict[AlertKey, dict[str, Any]] | None:
        alerts = {key(a): a for a in stack.api("/api/v1/alerts")["alerts"] if a["state"] == "firing"}
        return alerts if set(alerts) >= EXPECTED else None

    return eventually(firing, "every expected alert firing in Prometheus", stack)


# --- the tests -----------------------------------------------------------------------------------


def test_failure_alerts_reach_the_webhook_through_alertmanager_with_their_labels(stack: Stack) -> None:
    wanted = {k for k in EXPECTED if k[0] not in INHIBITED}

    def delivered() -> dict[AlertKey, tuple[str, dict[str, Any]]] | None:
        got = {key(alert): (receiver, alert) for receiver, alert in stack.webhook.alerts()
               if alert["status"] == "firing"}
        return got if wanted <= set(got) else None

    got = eventually(delivered, "the expected alerts at the webhook", stack)
    # The single failed distribution, with exactly its labels, annotations and route.
    receiver, failed = got[next(k for k in wanted if k[0] == "SCCMPackageDistributionFailed")]
    assert receiver == "configmgr-team"
    assert failed["labels"] == {
        "alertname": "SCCMPackageDistributionFailed", "severity": "warning", "job": "sccm",
        "instance": stack.metrics_exporter, "target": "failing", "site": "ABC", "package_id": "ABC00011",
        "server": "ABC-DP01.corp.example.com", "type": "copy", "status": "failed", "personality": "none",
    }
    assert failed["annotations"]["summary"] == "Package ABC00011 failed on ABC-DP01.corp.example.com"
    assert failed["annotations"]["description"] == (
        'Package ABC00011 (Office 365 "Monthly" & Visio) has been failed on ABC-DP01.corp.example.com '
        "(copy row, site ABC, target failing) for over an hour.")
    assert failed["annotations"]["runbook_url"] == "docs/runbooks/sccm-package-distribution-failed.md"
    assert (ROOT / failed["annotations"]["runbook_url"]).is_file()
    # Every package alert names its package when SMS_PackageBaseclass has it, and fires with the
    # ID alone when it does not.
    descriptions = {k[0]: alert["annotations"]["description"] for k, (_, alert) in got.items()}
    assert descriptions["SCCMPackageFailingOnManyDPs"].startswith(
        f"Package {BROKEN_PACKAGE} (Firefox ESR) is failed or retrying on 3 distribution points")
    assert descriptions["SCCMContentStuckInFlight"].startswith(
        "Package ABC00013 (Windows 11 23H2 upgrade) has been sent on ABC-DP04.corp.example.com")
    assert descriptions["SCCMPackageRetrying"] == (
        f"Package {UNNAMED_PACKAGE} has been retrying on ABC-DP02.corp.example.com (copy row, site ABC, "
        "target failing) for over 4 hours.")
    # The partial site's missing class: its collector alert, while the site is polled.
    assert "distribution point facts are stale, then missing" in descriptions["SCCMCollectorFailing"]
    # The DP collectors' alerts: the DP in error with its packages in error, the full drive, and
    # the out-of-sync group by its name.
    assert descriptions["SCCMDistributionPointStatusError"].startswith(
        f"Distribution point {BROKEN_DP} (site ABC, target failing) has been in error")
    assert descriptions["SCCMDistributionPointStatusError"].endswith(": 4 of its packages in error.")
    assert BROKEN_DP in descriptions["SCCMDistributionPointDiskFull"]
    assert descriptions["SCCMDPGroupOutOfSync"].startswith(
        f"Distribution point group {OUT_OF_SYNC_GROUP[0]} ({OUT_OF_SYNC_GROUP[1]}) of target failing "
        "has had 2 packages")
    # The broken DP pages once, on the critical route.
    receiver, dp = got[next(k for k in wanted if k[0] == "SCCMDistributionPointFailing")]
    assert receiver == "configmgr-oncall"
    assert dp["labels"] == {"alertname": "SCCMDistributionPointFailing", "severity": "critical", "target": "failing",
                            "site": "ABC", "server": BROKEN_DP}
    assert dp["annotations"]["summary"] == f"Distribution point {BROKEN_DP} is failing 6 packages"
    stale = got[("SCCMStatusStale", label_set(target="broken"))][1]
    assert "has not been polled successfully since the exporter started" in stale["annotations"]["description"]
    # Nothing else: no per-row alert for the broken DP's or the broken package's rows, nothing healthy.
    every = {key(alert) for _, alert in stack.webhook.alerts()}
    assert every - EXPECTED == set(), every - EXPECTED
    for name, labels in every:
        if name in PER_ROW_ALERTS:
            assert ("server", BROKEN_DP) not in labels and ("package_id", BROKEN_PACKAGE) not in labels


def test_alertmanager_inhibits_polls_failing_while_the_target_is_down(stack: Stack) -> None:
    def inhibited() -> list[dict[str, Any]] | None:
        result = http_get(f"{stack.alertmanager}/api/v2/alerts?filter=alertname%3D%22SCCMPollsFailing%22", timeout=10)
        assert result.status == 200, result.text
        alerts: list[dict[str, Any]] = json.loads(result.body)
        return alerts if alerts and all(a["status"]["inhibitedBy"] for a in alerts) else None

    [alert] = eventually(inhibited, "SCCMPollsFailing inhibited by SCCMTargetDown in Alertmanager", stack)
    assert alert["labels"]["target"] == "broken" and alert["labels"]["reason"] == "other"
    assert alert["status"]["state"] == "suppressed"


def test_healthy_site_fires_nothing(stack: Stack) -> None:
    firing = wait_until_expected_alerts_fire(stack)
    # The healthy site has been scraped through /probe for longer than any `for:` plus a margin.
    eventually(lambda: stack.query('count_over_time(sccm_up{target="healthy"}[20s]) >= 15'),
               "20 seconds of the healthy site in Prometheus", stack)
    [up] = stack.query('sccm_up{target="healthy"}')
    assert up["metric"] == {"__name__": "sccm_up", "target": "healthy", "job": "sccm-probe", "instance": "healthy"}
    assert up["value"][1] == "1"
    [rows] = stack.query('count(sccm_package_status{target="healthy"})')
    assert int(rows["value"][1]) == len(healthy_site(datetime.now(UTC)))
    every = stack.api("/api/v1/alerts")["alerts"]  # pending ones too
    assert [a for a in every if a["labels"].get("target") == "healthy"] == []
    assert {key(a) for a in every} == set(firing) == EXPECTED
    assert [a for _, a in stack.webhook.alerts() if a["labels"].get("target") == "healthy"] == []
    # And every rule evaluates without error.
    for group in stack.api("/api/v1/rules")["groups"]:
        for rule in group["rules"]:
            assert rule["health"] == "ok", rule


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    wait_until_expected_alerts_fire(stack)  # data scraped and rules evaluated for a while
    dashboard = load_dashboard()
    now = time.time()
    empty = []
    for query in queries(dashboard):
        expr = substitute(query.expr, ALL)
        if query.instant:
            data = stack.api("/api/v1/query", query=expr, time=f"{now:.3f}")
            has_data = bool(data["result"])
        else:
            data = stack.api("/api/v1/query_range", query=expr, start=f"{now - 60:.3f}", end=f"{now:.3f}", step="2")
            has_data = any(series["values"] for series in data["result"])
        if not has_data:
            empty.append(f"{query}: {expr}")
    assert empty == [], "queries without data:\n" + "\n".join(empty)
    for annotation in [a for a in dashboard["annotations"]["list"] if a.get("expr")]:
        assert stack.query(substitute(annotation["expr"], ALL)), annotation["name"]


def test_dashboard_variables_chain_from_label_values(stack: Stack) -> None:
    wait_until_expected_alerts_fire(stack)

    def values(name: str, chosen: dict[str, str]) -> list[str]:
        [variable] = [v for v in variables(load_dashboard()) if v["name"] == name]
        selector, label = label_values_query(substitute(variable["query"], chosen))
        data: list[str] = stack.api(f"/api/v1/label/{label}/values", **({"match[]": selector} if selector else {}))
        return data

    assert values("target", ALL) == ["broken", "failing", "healthy", "partial"]
    assert values("site", ALL) == ["ABC", "DEF", "GHI"]
    # As Grafana sends one chosen value, and several (a regex alternation).
    chosen = {**ALL, "target": "failing"}
    assert values("site", chosen) == ["ABC"]
    assert values("server", {**chosen, "site": "ABC"}) == [dp_host("ABC", i) for i in range(1, 6)]
    assert values("package", {**chosen, "site": "ABC"}) == FAILING_PACKAGES
    assert values("server", {**ALL, "target": "(failing|healthy)", "site": "DEF"}) == \
        [dp_host("DEF", i) for i in range(1, 4)]


def test_dashboard_joins_name_what_is_known_and_keep_what_is_not(stack: Stack) -> None:
    """Every joined query returns exactly the rows of its query without the join: named where the
    collectors know the package or DP, and all the same where they do not (a package missing from
    SMS_PackageBaseclass, the file target without package_info, a DP missing from
    SMS_DistributionPointInfo, the partial site whose dp_info fails)."""
    wait_until_expected_alerts_fire(stack)
    now = f"{time.time():.3f}"
    added = {"name", "version", "package_type", "pull", "pxe", "multicast", "internet_facing"}

    def rows(expr: str) -> list[dict[str, str]]:
        result: list[dict[str, Any]] = stack.api("/api/v1/query", query=expr, time=now)["result"]
        return [series["metric"] for series in result]

    def identity(labels: dict[str, str]) -> frozenset[tuple[str, str]]:
        return frozenset((k, v) for k, v in labels.items() if k not in added and k != "__name__")

    checked = set()
    for query in queries(load_dashboard()):
        expr = substitute(query.expr, ALL)
        join = outer_join(expr)
        if not join:
            continue
        joined, base = rows(expr), rows(join.base)
        assert base, f"{query}: no rows"
        assert sorted(map(identity, joined), key=sorted) == sorted(map(identity, base), key=sorted), query
        for labels in joined:
            if join.keys == ("target", "package_id"):
                # package_info runs on the WinRM targets (it works on the partial site too).
                known = labels["target"] in ("failing", "partial") and labels["package_id"] != UNNAMED_PACKAGE
                expected = PACKAGE_NAMES.get(labels["package_id"], f"Tools {labels['package_id'][-2:]}")
                assert labels.get("name") == (expected if known else None), (query, labels)
                checked.add((query.panel_id, known))
            else:
                known = labels["target"] == "failing" and labels["server"] != FACTLESS_DP
                facts = {k: labels.get(k) for k in join.labels}
                if known:
                    dp = int(labels["server"].split("-DP")[1][:2])
                    assert facts == {"pull": str(dp == 2).lower(), "pxe": str(dp == 1).lower(),
                                     "multicast": "false", "internet_facing": str(dp == 4).lower()}, labels
                else:
                    assert facts == dict.fromkeys(join.labels), (query, labels)
                checked.add((query.panel_id, known))
    # Every joined panel showed both kinds of rows.
    assert {known for _, known in checked} == {True, False}
    assert all((panel, not known) in checked for panel, known in checked), checked
