"""`--check-target NAME`, `/probe?target=NAME&debug=true` and the landing page's hints: what an
administrator sees the first time the exporter meets their provider.

Each failure of the fault matrix is run through the installed command against the WS-Management
test server: the step that broke is named, the verdict says FAILED, the exit code is 1, and the
hint says what to do in the words of docs/troubleshooting.md. No secret is ever printed.
"""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import StartExporter, console_script, free_port, labels
from datasets import single_site_dataset
from wsman_server import (
    DEFAULT_USERS,
    CertMapping,
    CimDatetime,
    WSManServer,
    cert_thumbprint,
    issue_client_cert,
    make_ca,
    make_self_signed_cert,
)

from exporter.check import Step, TextReport, check_target
from exporter.config import parse_config

USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
DATA = single_site_dataset("ABC", packages=12, servers=3, seed=3)
ALL = ("package_status", "package_info", "dp_info", "dp_content_state", "dp_status", "dp_drive", "dp_groups")


def config_text(server: WSManServer | None, *, port: int | None = None, host: str = "127.0.0.1",
                user: str = USER, password: str = PASSWORD, site_code: str | None = None, ca: bool = True,
                timeout: str = "10s", collectors: tuple[str, ...] = ALL, scheme: str | None = None) -> str:
    scheme = scheme or ("https" if server is not None and server.tls else "http")
    tls = f"\n    tls: {{ca_file: {server.ca_file}}}" if ca and server is not None and server.ca_file else ""
    return (
        f"defaults: {{timeout: {timeout}, collectors: [{', '.join(collectors)}]}}\n"
        "targets:\n"
        f"  - name: abc\n    source: winrm\n    host: '{host}'\n    port: {port or (server.port if server else 1)}\n"
        f"    scheme: {scheme}\n"
        + (f"    site_code: {site_code}\n" if site_code else "")
        + f"    auth: {{transport: ntlm, username: '{user}', password: '{password}', allow_unencrypted: true}}{tls}\n"
    )


def run_check(tmp_path: Path, text: str, *extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    return subprocess.run([console_script(), "--config.file", str(config), "--check-target", "abc", *extra],
                          capture_output=True, text=True, timeout=60)


def step_line(output: str, name: str) -> str:
    lines = [line for line in output.splitlines() if f"  {name} " in line or line.rstrip().endswith(f"  {name}")]
    assert lines, f"no step {name!r} in:\n{output}"
    return lines[0]


# --- a good check ---------------------------------------------------------------------------------


def test_a_good_check_shows_every_step_and_exits_0(tmp_path: Path) -> None:
    with WSManServer(DATA, tls=True, auth=("ntlm",)) as server:
        result = run_check(tmp_path, config_text(server))
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for step in ("resolve", "connect", "tls", "authenticate", "identify", "site"):
        assert " ok " in step_line(out, step), step
    assert "TLSv1." in step_line(out, "tls") and "certificate verified" in out
    assert "subject        CN=localhost" in out and "alternative    localhost" in out and "issuer" in out
    assert "expires" in out
    assert "ntlm as CORP\\svc-cm-exporter" in step_line(out, "authenticate")
    assert "Microsoft Corporation, OS: 10.0.20348 SP: 0.0 Stack: 3.0" in step_line(out, "identify")
    assert "ABC (the local site" in step_line(out, "site") and "ProviderForLocalSite=true" in out
    rows = len(DATA["root\\SMS\\site_ABC"]["SMS_PackageStatus"])
    assert f"SMS_PackageStatus: {rows} rows in" in step_line(out, "collector package_status")
    assert "SELECT PackageID, PkgServer, Personality, SiteCode, Status, Type, UpdateTime FROM SMS_PackageStatus" in out
    assert "first_row      PackageStatusRow(site='ABC'" in out
    for name in ALL[1:]:
        assert " ok " in step_line(out, f"collector {name}" + (" (1)" if name == "dp_groups" else "")), name
    assert out.splitlines()[-1].startswith("verdict: OK: abc: every enabled collector (7) read its class")
    assert PASSWORD not in out + result.stderr


def test_json_gives_one_object_per_step(tmp_path: Path) -> None:
    with WSManServer(DATA, auth=("ntlm",)) as server:
        result = run_check(tmp_path, config_text(server, site_code="ABC"), "--log.format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert objects[0]["check"] == "abc"
    steps = [o["step"] for o in objects[1:-1]]
    assert steps[:5] == ["resolve", "connect", "authenticate", "identify", "site"]  # no tls over http
    assert all({"ok", "seconds", "at", "summary", "hint"} <= set(o) for o in objects[1:-1])
    status = next(o for o in objects if o.get("step") == "collector package_status")
    assert status["rows"] == len(DATA["root\\SMS\\site_ABC"]["SMS_PackageStatus"]) and status["pages"] >= 1
    assert objects[-1]["verdict"] == "ok"
    auth = next(o for o in objects if o.get("step") == "authenticate")
    assert auth["protection"] == "messages sealed by ntlm"


def test_an_unknown_target_name(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(None, port=free_port()))
    result = subprocess.run([console_script(), "--config.file", str(config), "--check-target", "nope"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "no target named 'nope'" in result.stderr and "abc" in result.stderr


# --- the fault matrix: the step named, the verdict, the exit code, the hint -------------------------


@dataclass
class Failure:
    setup: Callable[[Path, pytest.FixtureRequest], tuple[WSManServer | None, str]]  # -> (server, config)
    step: str  # the step that breaks
    says: str  # a pattern of that step's line or the lines after it
    hint: str  # a pattern of the "what to do" line
    prepare: Callable[[WSManServer], None] = field(default=lambda server: None)


def _closed_port(tmp: Path, request: pytest.FixtureRequest) -> tuple[WSManServer | None, str]:
    return None, config_text(None, port=free_port())


def _untrusted(tmp: Path, request: pytest.FixtureRequest) -> tuple[WSManServer | None, str]:
    server = WSManServer(DATA, tls=True, auth=("ntlm",))
    return server, config_text(server, ca=False)


def _name_mismatch(tmp: Path, request: pytest.FixtureRequest) -> tuple[WSManServer | None, str]:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 loopback")
    server = WSManServer(DATA, tls=True, auth=("ntlm",), host="::1")  # the certificate names 127.0.0.1
    return server, config_text(server, host="::1")


def _expired_certificate(tmp: Path, request: pytest.FixtureRequest) -> tuple[WSManServer | None, str]:
    now = datetime.now(UTC)
    cert = make_self_signed_cert(str(tmp), not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    server = WSManServer(DATA, tls=True, auth=("ntlm",), cert=cert)
    return server, config_text(server)


def _kerberos_without_spn(tmp: Path, request: pytest.FixtureRequest) -> tuple[WSManServer | None, str]:
    krb = request.getfixturevalue("kerberos")
    for name, value in krb.env.items():
        request.getfixturevalue("monkeypatch").setenv(name, value)  # the command inherits them
    server = WSManServer(DATA, auth=("kerberos",), kerberos_keytab=krb.service_keytab)
    text = config_text(server).replace(
        f"auth: {{transport: ntlm, username: '{USER}', password: '{PASSWORD}', allow_unencrypted: true}}",
        f"auth: {{transport: kerberos, keytab_file: {krb.client_keytab}, "
        "kerberos_hostname_override: sccm.corp.example.com}")
    return server, text


def _credssp_wrong_password(tmp: Path, request: pytest.FixtureRequest) -> tuple[WSManServer | None, str]:
    server = WSManServer(DATA, tls=True, auth=("credssp",))
    return server, config_text(server, password="Wr0ng-Passw0rd").replace("transport: ntlm", "transport: credssp")


def _unmapped_certificate(tmp: Path, request: pytest.FixtureRequest) -> tuple[WSManServer | None, str]:
    ca = make_ca(str(tmp))
    cert, key = issue_client_cert(str(tmp), ca, "stranger", upn="stranger@corp.example.com", stem="stranger")
    server = WSManServer(DATA, tls=True, auth=("certificate",), client_ca=ca[0],
                         cert_mappings=[CertMapping("svc@corp.example.com", cert_thumbprint(ca[0]), USER)])
    text = config_text(server).replace(
        f"auth: {{transport: ntlm, username: '{USER}', password: '{PASSWORD}', allow_unencrypted: true}}",
        "auth: {transport: certificate}").replace(
        f"tls: {{ca_file: {server.ca_file}}}",
        f"tls: {{ca_file: {server.ca_file}, cert_file: {cert}, key_file: {key}}}")
    return server, text


def _bad_datetime(server: WSManServer) -> None:
    rows = [dict(row) for row in DATA["root\\SMS\\site_ABC"]["SMS_PackageStatus"]]
    rows[0]["UpdateTime"] = CimDatetime("2024-13-45T99:00:00Z")
    server.set_rows("root\\SMS\\site_ABC", "SMS_PackageStatus", rows)


def _plain(**kwargs: Any) -> Callable[[Path, pytest.FixtureRequest], tuple[WSManServer | None, str]]:
    def setup(tmp: Path, request: pytest.FixtureRequest) -> tuple[WSManServer | None, str]:
        server = WSManServer(DATA, auth=("ntlm",), **kwargs.pop("server", {}))
        return server, config_text(server, **kwargs)

    return setup


def _hang(tmp: Path, request: pytest.FixtureRequest) -> tuple[WSManServer | None, str]:
    server = WSManServer(DATA, auth=("ntlm",))
    server.hang_on_connect = True
    return server, config_text(server, timeout="2s")


FAILURES = {
    "connection_refused": Failure(_closed_port, "connect", "Connection refused", "nothing listens there"),
    "certificate_not_trusted": Failure(_untrusted, "tls", "unknown issuer", "set tls.ca_file"),
    "certificate_name_mismatch": Failure(_name_mismatch, "tls", "name mismatch", "set host to a name"),
    "provider_hangs": Failure(_hang, "authenticate", "did not answer in time", "did not answer in time"),
    "wrong_password": Failure(_plain(password="Wr0ng-Passw0rd"), "authenticate", "rejected the credentials",
                              "whether the account is locked"),
    "access_denied": Failure(_plain(server={"denied_users": [USER]}), "site", "access denied",
                             "Remote Management Users"),
    "wrong_site_code": Failure(_plain(site_code="XYZ"), "site", "XYZ is not one this provider serves \\(ABC\\)",
                               "wrong site_code"),
    "wrong_site_code_each_class": Failure(_plain(site_code="XYZ"), "collector package_status", "invalid namespace",
                                          "wrong site_code"),
    "invalid_class": Failure(_plain(site_code="ABC"), "collector dp_status", "invalid class",
                             "is this host an SMS Provider",
                             prepare=lambda s: s.remove_class("root\\SMS\\site_ABC", "SMS_DPStatusInfo")),
    "provider_failure": Failure(_plain(site_code="ABC"), "collector package_info", "provider failure",
                                "smsprov.log",
                                prepare=lambda s: setattr(s, "class_faults",
                                                          {"SMS_PackageBaseclass": "provider_failure"})),
    "certificate_expired": Failure(_expired_certificate, "tls", "expired", "renew the WinRM listener's certificate"),
    "kerberos_spn_not_registered": Failure(_kerberos_without_spn, "authenticate", "server not found",
                                           "names the client principal and the SPN"),
    "credssp_wrong_password": Failure(_credssp_wrong_password, "authenticate", "STATUS_LOGON_FAILURE",
                                      "whether the account is locked"),
    "certificate_unmapped": Failure(_unmapped_certificate, "authenticate", "mapped the client certificate",
                                    "mapped to a local account"),
    "hang_mid_pull": Failure(_plain(site_code="ABC", timeout="2s"), "collector package_status",
                             "deadline|did not answer|timed out", "did not answer in time",
                             prepare=lambda s: setattr(s, "hang", {"pull"})),
    "reset_mid_pull": Failure(_plain(site_code="ABC"), "collector package_status", "reset",
                              "the connection broke", prepare=lambda s: setattr(s, "reset_mid_pull", 1000)),
    "xml_bomb": Failure(_plain(site_code="ABC"), "collector dp_info", "DOCTYPE", "report it with a capture",
                        prepare=lambda s: s.corrupt_next("enumerate", "bomb", class_name="SMS_DistributionPointInfo")),
    "not_utf8": Failure(_plain(site_code="ABC"), "collector package_info", "UTF", "report it with a capture",
                        prepare=lambda s: s.corrupt_next("enumerate", "non_utf8", class_name="SMS_PackageBaseclass")),
    "invalid_datetime": Failure(_plain(site_code="ABC"), "collector package_status", "UpdateTime",
                                "report it with a capture", prepare=_bad_datetime),
    "malformed_reply": Failure(_plain(site_code="ABC"), "collector dp_drive", "malformed XML",
                               "report it with a capture",
                               prepare=lambda s: s.corrupt_next("enumerate", "malformed",
                                                                class_name="SMS_DistributionPointDriveInfo")),
}


@pytest.fixture(params=sorted(FAILURES))
def failure(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Failure, subprocess.CompletedProcess[str]]]:
    case = FAILURES[request.param]
    server, text = case.setup(tmp_path, request)
    if server is None:
        yield case, run_check(tmp_path, text)
        return
    with server:
        case.prepare(server)
        yield case, run_check(tmp_path, text)


def test_each_failure_names_its_step_says_what_to_do_and_exits_1(
    failure: tuple[Failure, subprocess.CompletedProcess[str]]
) -> None:
    case, result = failure
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    line = step_line(out, case.step)
    assert " FAIL " in line, line
    after = out[out.index(line):]
    assert re.search(case.says, after), after
    what_to_do = [text for text in after.splitlines() if "what to do" in text]
    assert what_to_do and re.search(case.hint, what_to_do[0]), after
    assert out.splitlines()[-1].startswith("verdict: FAILED: abc"), out
    assert PASSWORD not in out + result.stderr and "Wr0ng-Passw0rd" not in out + result.stderr


def test_a_collector_failing_leaves_the_others_read(tmp_path: Path) -> None:
    with WSManServer(DATA, auth=("ntlm",)) as server:
        server.remove_class("root\\SMS\\site_ABC", "SMS_DPStatusInfo")
        result = run_check(tmp_path, config_text(server, site_code="ABC"))
    assert result.returncode == 1
    assert " ok " in step_line(result.stdout, "collector package_status")
    assert " ok " in step_line(result.stdout, "collector dp_drive")
    assert "verdict: FAILED: abc: 6 of 7 collectors read their classes; failed: dp_status" in result.stdout


def test_a_name_that_does_not_resolve_says_check_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    # In process, with the resolver answering "no such name" (no DNS query leaves the machine).
    target = parse_config(config_text(None, port=1, host="cm01.invalid")).targets[0]
    out = io.StringIO()

    def no_such_name(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    outcome = check_target(target, TextReport(out))
    assert (outcome.ok, outcome.failed_at, outcome.collectors) == (False, "resolve", {})
    text = out.getvalue()
    assert "FAIL  resolve" in text and "does not resolve" in text and "check host and this machine's DNS" in text


# --- /probe?debug=true --------------------------------------------------------------------------


def _exporter_config(tmp_path: Path, server: WSManServer, **extra: Any) -> Path:
    path = tmp_path / "exporter.yaml"
    path.write_text(config_text(server, **{"site_code": "ABC", **extra}).replace(
        "defaults: {", "defaults: {interval: 1h, stale_after: 2h, "))
    return path


def test_the_debug_probe_is_the_same_diagnosis_as_text(tmp_path: Path, run_exporter: StartExporter) -> None:
    with WSManServer(DATA, auth=("ntlm",)) as server:
        exporter = run_exporter(_exporter_config(tmp_path, server))
        exporter.wait_ready()
        before = exporter.samples()
        served = server.items_served("SMS_PackageStatus")
        result = exporter.get("/probe?target=abc&debug=true")
        after = exporter.samples()
        missing = exporter.get("/probe?target=nope&debug=true")
    assert result.status == 200
    assert result.headers["Content-Type"].startswith("text/plain")
    assert "FAIL" not in result.text and "verdict: OK: abc" in result.text
    assert "identify" in result.text and "collector dp_groups (2)" in result.text
    assert server.items_served("SMS_PackageStatus") == 2 * served  # a fresh poll of its own
    # The scheduled poll's data are untouched: same samples, same poll count.
    assert before["sccm_package_status"] == after["sccm_package_status"]
    assert before["sccm_last_poll_success_timestamp_seconds"] == after["sccm_last_poll_success_timestamp_seconds"]
    assert missing.status == 404
    assert PASSWORD not in result.text


def test_a_second_debug_probe_of_the_same_target_while_one_runs_gets_429(
    tmp_path: Path, run_exporter: StartExporter
) -> None:
    with WSManServer(DATA, auth=("ntlm",)) as server:
        exporter = run_exporter(_exporter_config(tmp_path, server, timeout="8s"))
        exporter.wait_ready()
        server.hang_classes = {"SMS_PackageStatus"}
        asked = len(server.requests_of("SMS_PackageStatus", "enumerate"))
        first: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: first.update(r=exporter.get("/probe?target=abc&debug=true")))
        thread.start()
        deadline = time.monotonic() + 10
        while len(server.requests_of("SMS_PackageStatus", "enumerate")) == asked and time.monotonic() < deadline:
            time.sleep(0.05)  # the debug probe's own Enumerate is hanging now
        second = exporter.get("/probe?target=abc&debug=true")
        metrics = exporter.get("/metrics")
        server.hang_classes = set()
        thread.join(20)
    assert second.status == 429 and "running already" in second.text
    assert metrics.status == 200  # the scheduled data are still served meanwhile
    assert first["r"].status == 200


def test_the_debug_probe_needs_the_web_configurations_credentials(
    tmp_path: Path, run_exporter: StartExporter
) -> None:
    import bcrypt

    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prom: {bcrypt.hashpw(b'scrape-pw', bcrypt.gensalt(4)).decode()}\n")
    with WSManServer(DATA, auth=("ntlm",)) as server:
        exporter = run_exporter(_exporter_config(tmp_path, server), ["--web.config.file", str(web)],
                                auth=("prom", "scrape-pw"))
        exporter.wait_ready()
        anonymous = exporter.get("/probe?target=abc&debug=true", {"Authorization": ""})
        allowed = exporter.get("/probe?target=abc&debug=true")
    assert anonymous.status == 401
    assert allowed.status == 200 and "verdict: OK" in allowed.text


# --- the landing page -------------------------------------------------------------------------------


def test_the_landing_page_shows_the_last_error_with_its_hint_and_links_the_debug_probe(
    tmp_path: Path, run_exporter: StartExporter
) -> None:
    with WSManServer(DATA, auth=("ntlm",)) as server:
        # No site_code: every collector fails at the discovery of the site, with the same message.
        exporter = run_exporter(_exporter_config(tmp_path, server, password="Wr0ng-Passw0rd", site_code=None))
        exporter.wait_for("an auth failure counted", lambda got: got.get("sccm_poll_errors_total", {}).get(
            labels(target="abc", reason="auth"), 0) >= 1)
        page = exporter.get("/").text
    assert "rejected the credentials" in page
    assert "what to do:</i> the provider refused the account" in page
    # The six optional collectors failed alike: one line, one hint, not six.
    assert page.count("what to do:</i> the provider refused the account") == 2  # the target's, the collectors'
    assert re.search(r"(?:package_info|dp_\w+)(?:, (?:package_info|dp_\w+)){5}: down \(auth\)", page), page
    assert '<a href="/probe?target=abc&amp;debug=true">' in page
    assert "Wr0ng-Passw0rd" not in page


def test_hints_follow_the_troubleshooting_words() -> None:
    from exporter.hints import hint

    assert hint("wmi_fault", "invalid namespace root\\SMS\\site_XYZ (code 0x8004100E)") is not None
    assert "site_code" in (hint("wmi_fault", "invalid namespace (code 0x8004100E)") or "")
    assert "Remote Management Users" in (hint("auth", "access denied on root\\SMS (code 0x80041003)") or "")
    assert hint("other", "something nobody expected") is None
    assert Step("x", True, 0.0, "").fatal  # a step stops the check unless it says otherwise
