"""The fault matrix (issue 5, item 4): every fault end to end, against one installed exporter.

One exporter process polls one loopback WS-Management server per case, plus a healthy control
target. Every target first gets a good poll; then each case's server is broken its own way, and
once every case has been polled through its fault the tests below check, case by case: the
process still serves, `sccm_up` and the reason counter are right, the last good rows are still
served (stale_after is 1m here), and the log says what happened without the password. One
process for every case keeps the file fast; one server per case keeps the faults apart, which is
also the "one broken target, the others unaffected" case (`control`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ExporterProcess, Samples, labels
from datasets import single_site_dataset, site_namespace
from wsman_server import DEFAULT_USERS, CimDatetime, WSManServer

USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
SITE = "ABC"
FOREVER = 100_000  # injections queued: enough for every poll of the test


def _rows(server: WSManServer) -> list[dict[str, Any]]:
    return [dict(r) for r in single_site_dataset(SITE)[site_namespace(SITE)]["SMS_PackageStatus"]]


def _set_rows(server: WSManServer, rows: list[dict[str, Any]]) -> None:
    server.set_rows(site_namespace(SITE), "SMS_PackageStatus", rows)


def _with_status(server: WSManServer, status: int) -> None:
    rows = _rows(server)
    rows[0]["Status"] = status
    _set_rows(server, rows)


def _with_bad_datetime(server: WSManServer) -> None:
    rows = _rows(server)
    rows[0]["UpdateTime"] = CimDatetime("2024-13-45T99:00:00Z")
    _set_rows(server, rows)


def _hang_on_connect(server: WSManServer) -> None:
    # New connections are accepted and never answered; the kept-alive one is closed after its
    # next reply, so the exporter has to connect again.
    server.hang_on_connect = True
    server.drop_connection_after_requests = 1


def _revoke(server: WSManServer) -> None:
    # The account disappears: the next connection's NTLM handshake is refused with HTTP 401.
    server.users.clear()
    server.drop_connection_after_requests = 1


@dataclass(frozen=True)
class Case:
    name: str
    breaks: Callable[[WSManServer], None]
    reason: str | None  # None: the poll still succeeds
    log_says: str = ""  # a regular expression the target's "poll failed" line must match


CASES = [
    Case("refused", lambda s: s.stop(), "connection", r"cannot talk to"),
    Case("hang_connect", _hang_on_connect, "timeout", r"timed? ?out|within"),
    Case("hang_pull", lambda s: setattr(s, "hang", {"pull"}), "timeout", r"timed? ?out|within"),
    Case("reset_pull", lambda s: setattr(s, "reset_mid_pull", FOREVER), "connection", r"cannot talk to"),
    Case("http_401", _revoke, "auth", r"rejected the credentials .*HTTP 401"),
    *(
        Case(kind, lambda s, k=kind: s.fault_next("pull", k, FOREVER), reason, words)  # type: ignore[misc]
        for kind, reason, words in (
            ("invalid_namespace", "wmi_fault", r"0x8004100E"),
            ("invalid_namespace_uri", "wmi_fault", r"."),
            ("invalid_class", "wmi_fault", r"0x80041010"),
            ("access_denied", "auth", r"0x80041003|access denied|Access denied"),
            ("access_denied_wsman", "auth", r"ccess"),
            ("provider_failure", "wmi_fault", r"0x80041001|provider"),
            ("invalid_context", "wmi_fault", r"context"),
        )
    ),
    *(
        Case(f"corrupt_{kind}", lambda s, k=kind: s.corrupt_next("pull", k, FOREVER), "parse", words)  # type: ignore[misc]
        for kind, words in (
            ("malformed", r"malformed XML"),
            ("truncated", r"malformed XML"),
            ("bomb", r"DOCTYPE or entity declaration"),
            ("non_utf8", r"not valid UTF-8"),
            ("oversized", r"larger than the limit"),
        )
    ),
    Case("invalid_datetime", _with_bad_datetime, "parse", r"UpdateTime|datetime"),
    Case("zero_rows", lambda s: _set_rows(s, []), None),
    Case("duplicate_rows", lambda s: _set_rows(s, _rows(s) * 2), None),
    Case("unknown_enum", lambda s: _with_status(s, 42), None),
]
BY_NAME = {case.name: case for case in CASES}
# A provider that goes down for good, on a target with a short stale_after: its rows must go.
STALE = "stale_after_4s"
STALE_AFTER = 4.0


@dataclass
class Matrix:
    exporter: ExporterProcess
    servers: dict[str, WSManServer]
    before: Samples
    after: Samples
    log: str


def _config(path: Path, secret: Path, servers: dict[str, WSManServer]) -> Path:
    lines = [
        "defaults:",
        "  interval: 2s",
        "  timeout: 1500ms",
        "  stale_after: 1m",
        "  parallel_enumerations: 1",
        "  collectors: [package_status]",
        "targets:",
    ]
    for name, server in servers.items():
        lines += [
            f"  - name: {name}",
            "    source: winrm",
            "    host: 127.0.0.1",
            f"    port: {server.port}",
            "    scheme: http",
            f"    site_code: {SITE}",
            f"    auth: {{transport: ntlm, username: '{USER}', password_file: {secret}}}",
        ]
        if name == "corrupt_oversized":
            lines.append("    max_response_bytes: 4194304")
        if name == STALE:
            lines.append(f"    stale_after: {STALE_AFTER:g}s")
    path.write_text("\n".join(lines) + "\n")
    return path


def _errors(samples: Samples, target: str) -> dict[str, float]:
    return {dict(k)["reason"]: v for k, v in samples["sccm_poll_errors_total"].items() if dict(k)["target"] == target}


def _of(samples: Samples, family: str, target: str) -> dict[Any, float]:
    return {k: v for k, v in samples.get(family, {}).items() if dict(k)["target"] == target}


def _settled(samples: Samples) -> bool:
    for case in CASES:
        errors = _errors(samples, case.name)
        if case.reason is None:
            if samples["sccm_last_poll_success_timestamp_seconds"][labels(target=case.name)] <= 0:
                return False
        elif errors.get(case.reason, 0) < 1:
            return False
    return True


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    tmp = tmp_path_factory.mktemp("faults")
    secret = tmp / "cm_password"
    secret.write_text(PASSWORD + "\n")
    servers = {name: WSManServer(single_site_dataset(SITE)).start() for name in ["control", STALE, *BY_NAME]}
    exporter = ExporterProcess(_config(tmp / "config.yaml", secret, servers), tmp / "exporter.log")
    try:
        exporter.wait_ready()
        before = exporter.wait_for("every target up", lambda s: all(v == 1 for v in s["sccm_up"].values()))
        first_success = before["sccm_last_poll_success_timestamp_seconds"]
        for case in CASES:
            case.breaks(servers[case.name])
        servers[STALE].stop()

        def settled(samples: Samples) -> bool:
            # A row case has settled once a poll finished after its data changed.
            return _settled(samples) and all(
                samples["sccm_last_poll_success_timestamp_seconds"][labels(target=c.name)]
                > first_success[labels(target=c.name)]
                for c in CASES if c.reason is None
            )

        after = exporter.wait_for("every case polled through its fault", settled, timeout=45)
        yield Matrix(exporter, servers, before, after, exporter.log())
    finally:
        exporter.stop()
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize("name", [c.name for c in CASES if c.reason is not None])
def test_a_failing_target_is_down_counted_and_keeps_its_last_good_rows(matrix: Matrix, name: str) -> None:
    case = BY_NAME[name]
    after = matrix.after
    assert after["sccm_up"][labels(target=name)] == 0
    errors = _errors(after, name)
    assert errors[case.reason or ""] >= 1
    assert sum(errors.values()) == errors[case.reason or ""], errors  # no other reason counted
    # Within stale_after the last good rows are still served, unchanged.
    assert _of(after, "sccm_package_status", name) == _of(matrix.before, "sccm_package_status", name)
    assert _of(after, "sccm_package_status_rows", name) == _of(matrix.before, "sccm_package_status_rows", name)
    failed = [line for line in matrix.log.splitlines() if "poll failed" in line and f"target={name} " in line]
    assert failed, f"no 'poll failed' line for {name}"
    assert f"reason={case.reason}" in failed[0]
    assert re.search(case.log_says, failed[0]), failed[0]


def test_the_healthy_target_beside_them_is_unaffected(matrix: Matrix) -> None:
    after = matrix.after
    assert after["sccm_up"][labels(target="control")] == 1
    assert sum(_errors(after, "control").values()) == 0
    assert _of(after, "sccm_package_status", "control") == _of(matrix.before, "sccm_package_status", "control")


def test_the_process_still_serves_and_never_logs_the_password(matrix: Matrix) -> None:
    assert matrix.exporter.proc.poll() is None
    for path in ("/-/healthy", "/-/ready", "/metrics", "/probe?target=corrupt_bomb"):
        assert matrix.exporter.get(path).status == 200, path
    assert PASSWORD not in matrix.log
    assert "Traceback" not in matrix.log
    # Nor in what the exporter serves: the landing page shows every target's last error.
    landing = matrix.exporter.get("/").text
    assert "http_401" in landing and "rejected the credentials" in landing
    assert PASSWORD not in landing and PASSWORD not in matrix.exporter.scrape()


def test_zero_rows_is_a_good_poll_of_an_empty_table(matrix: Matrix) -> None:
    after = matrix.after
    assert after["sccm_up"][labels(target="zero_rows")] == 1
    assert _of(after, "sccm_package_status", "zero_rows") == {}
    assert set(_of(after, "sccm_package_status_rows", "zero_rows").values()) == {0.0}


def test_duplicate_rows_are_exported_once(matrix: Matrix) -> None:
    after = matrix.after
    assert after["sccm_up"][labels(target="duplicate_rows")] == 1
    assert _of(after, "sccm_package_status", "duplicate_rows") == _of(
        matrix.before, "sccm_package_status", "duplicate_rows")


def test_an_unknown_enum_value_is_exported_as_its_number(matrix: Matrix) -> None:
    after = matrix.after
    assert after["sccm_up"][labels(target="unknown_enum")] == 1
    statuses = {dict(k)["status"] for k in _of(after, "sccm_package_status", "unknown_enum")}
    assert "42" in statuses


def test_after_stale_after_the_rows_go_and_the_health_stays(matrix: Matrix) -> None:
    before = _of(matrix.before, "sccm_package_status", STALE)
    assert before
    got = matrix.exporter.wait_for(
        "the stale target's rows to go",
        lambda s: not _of(s, "sccm_package_status", STALE) and not _of(s, "sccm_package_status_rows", STALE),
        timeout=STALE_AFTER + 10,
    )
    assert got["sccm_up"][labels(target=STALE)] == 0
    assert _errors(got, STALE)["connection"] >= 1
    assert got["sccm_last_poll_success_timestamp_seconds"][labels(target=STALE)] > 0
    assert got["sccm_up"][labels(target="control")] == 1  # and the others keep theirs
    assert _of(got, "sccm_package_status", "control")
