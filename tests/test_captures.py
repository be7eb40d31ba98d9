"""Captures (`exporter.capture`): what a provider sent, recorded, anonymized, and replayed.

Every directory of tests/captures/ is replayed by the test server to a real poll through real
pywinrm, which must end as the poll that was recorded ended (a capture a user sends us becomes a
test by being dropped there). A recording holds no secret over any transport the test server
offers; an anonymized one names nothing of the estate and still replays to the same rows.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from conftest import Kerberos, console_script, key_lines, poll_collectors, record_poll
from datasets import (
    DP_GROUP,
    PACKAGE_BASECLASS,
    PACKAGE_STATUS,
    PROVIDER_MACHINE,
    Dataset,
    dp_host,
    single_site_dataset,
    site_namespace,
    site_server,
)
from wsman_server import DEFAULT_USERS, CertMapping, WSManServer, cert_thumbprint, issue_client_cert, make_ca

from exporter.capture import (
    INDEX,
    SCRUBBED,
    Anonymizer,
    CaptureError,
    CollectorOutcome,
    Settings,
    load_capture,
    safe_headers,
)
from exporter.collectors import SPECS
from exporter.config import AuthConfig, TargetConfig, TLSConfig
from exporter.winrm.source import WinRMSource

CAPTURES = Path(__file__).parent / "captures"
USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
UPN = "svc-cm-exporter@corp.example.com"
SITE = "P01"  # no hex letter: never found by chance in a message ID or an enumeration context
DATA = single_site_dataset(SITE, packages=6, servers=3, seed=9)
NAMESPACE = site_namespace(SITE)


def capture_directories() -> list[Path]:
    return sorted(path for path in CAPTURES.iterdir() if path.is_dir() and not path.name.startswith(("_", ".")))


def target(server: WSManServer, *, settings: Settings | None = None, collectors: tuple[str, ...] = tuple(SPECS),
           parallel: int = 2, site_code: str | None = None, auth: AuthConfig | None = None,
           tls: TLSConfig | None = None, host: str = "127.0.0.1") -> TargetConfig:
    """A target of `server`: NTLM (sealed over http) unless `auth` says otherwise (and `tls` the
    client certificate); a replay's settings (collectors, slices, site code) from the capture's
    index when given."""
    if settings is not None:
        collectors, parallel, site_code = settings.collectors, settings.parallel_enumerations, settings.site_code
    return TargetConfig(
        name="capture", source="winrm", interval=300, timeout=30, per_row="all", stale_after=900,
        host=host, port=server.port, scheme="https" if server.tls else "http", site_code=site_code,
        auth=auth or AuthConfig(transport="ntlm", username=USER, password=PASSWORD),
        tls=replace(tls or TLSConfig(), ca_file=server.ca_file), parallel_enumerations=parallel,
        collectors=frozenset(collectors),
    )


def replay(directory: Path) -> tuple[dict[str, CollectorOutcome], dict[str, CollectorOutcome]]:
    """(what the capture's poll gave, what a poll of its replay gives), per collector."""
    capture = load_capture(directory)
    assert capture.summary is not None, f"{directory.name}: {INDEX} has no summary: the recording was never closed"
    settings = capture.summary.settings
    with WSManServer({}, users={USER: PASSWORD}, auth=("ntlm",)) as server:
        server.replay(directory)
        source = WinRMSource(target(server, settings=settings), property_list=settings.property_list)
        try:
            got = poll_collectors(source, settings.collectors, time.monotonic() + 30)
        finally:
            source.close()
        unmatched = server.replay_unmatched
    assert not unmatched, f"{directory.name}: requests the capture has no reply for: {unmatched}"
    return capture.summary.collectors, got


def assert_same_outcome(recorded: dict[str, CollectorOutcome], got: dict[str, CollectorOutcome]) -> None:
    """Which collectors failed and why, and the rows of those that read everything."""
    assert {name: (o.ok, o.reason) for name, o in got.items()} == {name: (o.ok, o.reason) for name, o in
                                                                    recorded.items()}
    assert {name: o.rows for name, o in got.items() if o.ok} == {name: o.rows for name, o in recorded.items() if o.ok}


def files(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(directory.iterdir())}


# --- every capture replays ----------------------------------------------------------------------------


@pytest.mark.parametrize("directory", capture_directories(), ids=lambda path: path.name)
def test_a_capture_replays_to_the_outcome_it_recorded(directory: Path) -> None:
    recorded, got = replay(directory)
    assert_same_outcome(recorded, got)


def test_the_captures_show_each_shape_the_docs_describe() -> None:
    """Property lists, SELECT *, and faults among answers (one anonymized), each with several Pulls."""
    shapes = {path.name: load_capture(path) for path in capture_directories()}
    assert {"property-list", "select-star", "faults"} <= shapes.keys()
    for name, capture in shapes.items():
        assert [e.action for e in capture.exchanges].count("Pull") >= 3, name
    replies = {name: "".join(capture.body(e.reply).decode() for e in capture.exchanges if e.reply)
               for name, capture in shapes.items()}
    assert "<w:XmlFragment>" in replies["property-list"] and "<p:SMS_PackageStatus " not in replies["property-list"]
    assert "<p:SMS_PackageStatus " in replies["select-star"] and "<w:XmlFragment>" not in replies["select-star"]
    faults = shapes["faults"]
    assert faults.anonymized and {e.status for e in faults.exchanges} == {200, 500}
    assert "<s:Fault>" in replies["faults"] and "InvalidEnumerationContext" in replies["faults"]
    assert faults.summary is not None and not all(o.ok for o in faults.summary.collectors.values())


@pytest.mark.parametrize(("index", "message"), [
    (None, "no index.json"),
    ("{not json", "not valid JSON"),
    ('{"format": 99, "exchanges": []}', "format 99"),
    ('{"format": 1, "exchanges": {}}', "exchanges: expected a list"),
    ('{"format": 1, "exchanges": [{"seq": "one"}]}', r"exchanges\[0\]\.seq: expected int"),
    ('{"format": 1, "exchanges": [{"seq": 1, "lane": "X/0", "attempt": 1, "action": "Pull", "request": "1.xml",'
     ' "start": 0}]}', r"exchanges\[0\]\.request: file '1.xml' is missing"),
    ('{"format": 1, "exchanges": [], "summary": {"settings": {"collectors": []}}}', r"summary\.settings\.scheme"),
], ids=["no-index", "bad-json", "format", "exchanges", "seq", "missing-file", "summary"])
def test_a_directory_that_is_no_capture_is_refused_saying_why(tmp_path: Path, index: str | None, message: str) -> None:
    if index is not None:
        (tmp_path / INDEX).write_text(index)
    with WSManServer({}) as server, pytest.raises(CaptureError, match=message):
        server.replay(tmp_path)


def test_a_request_the_capture_has_no_reply_for_is_a_fault_naming_it() -> None:
    with WSManServer({}, users={USER: PASSWORD}, auth=("ntlm",)) as server:
        server.replay(CAPTURES / "select-star")
        source = WinRMSource(target(server, collectors=("package_status", "dp_status"), site_code=SITE),
                             property_list=False)
        try:
            got = poll_collectors(source, ("package_status", "dp_status"), time.monotonic() + 20)
        finally:
            source.close()
        unmatched = server.replay_unmatched
    assert got["dp_status"].reason == "wmi_fault" and "holds no reply" in (got["dp_status"].error or "")
    assert len(unmatched) == 1 and unmatched[0].endswith("/site_P01/SMS_DPStatusInfo"), unmatched
    assert got["package_status"].ok


# --- recording ------------------------------------------------------------------------------------------


def test_every_request_is_recorded_failures_and_resends_included_and_replays_the_same(tmp_path: Path) -> None:
    """A dropped connection (HTTP 400, empty body) and its resend, an operation timeout (its fault
    body recorded although pywinrm raises it bodiless) and its restart, one Release, all in the index."""
    with WSManServer(DATA, users={USER: PASSWORD}, auth=("ntlm",), page_bytes=900) as server:
        server.drop_connection_after_requests = 3
        server.fault_next("pull", "timed_out", class_name=PACKAGE_STATUS)
        summary = record_poll(target(server, collectors=("package_status", "dp_info"), parallel=2), tmp_path)
        sent = len(server.requests)
    capture = load_capture(tmp_path)
    exchanges = capture.exchanges
    assert [e.seq for e in exchanges] == list(range(1, len(exchanges) + 1))
    dropped = [e for e in exchanges if e.status == 400]
    assert dropped and all(e.reply is None and "HTTP 400" in (e.error or "") for e in dropped)
    assert len(exchanges) == sent + len(dropped)  # those the server processed, and those it could not unseal
    assert any(e.attempt == 2 and e.status == 200 for e in exchanges)
    timed_out = [e for e in exchanges if e.error and e.error.startswith("WinRMOperationTimeoutError")]
    assert len(timed_out) == 1 and timed_out[0].status == 500 and timed_out[0].reply is not None
    assert "w:TimedOut" in capture.body(timed_out[0].reply).decode()
    assert {e.lane for e in exchanges} >= {"SMS_PackageStatus/0", "SMS_PackageStatus/1", "SMS_DistributionPointInfo/0"}
    assert {e.action for e in exchanges} >= {"Enumerate", "Pull"}
    assert all(e.encrypted and e.duration is not None for e in exchanges if e.status == 200)
    assert all(outcome.ok for outcome in summary.collectors.values())
    recorded, got = replay(tmp_path)
    assert_same_outcome(recorded, got)


def test_a_walk_given_up_is_released_and_the_replay_fails_the_same_way(tmp_path: Path) -> None:
    """A row the collector cannot read ends the walk: its Release is recorded, and replayed plainly."""
    rows = [dict(row) for row in DATA[NAMESPACE][PACKAGE_STATUS]]
    rows[5]["Status"] = "broken"
    with WSManServer(DATA, users={USER: PASSWORD}, auth=("ntlm",), page_bytes=600) as server:
        server.set_rows(NAMESPACE, PACKAGE_STATUS, rows)
        summary = record_poll(target(server, collectors=("package_status",), parallel=1, site_code=SITE), tmp_path)
    assert summary.collectors["package_status"].reason == "parse"
    releases = [e for e in load_capture(tmp_path).exchanges if e.action == "Release"]
    assert len(releases) == 1 and releases[0].status == 200 and releases[0].context
    recorded, got = replay(tmp_path)
    assert_same_outcome(recorded, got)


def test_without_a_recorder_no_hook_is_set(tmp_path: Path) -> None:
    with WSManServer(DATA, users={USER: PASSWORD}, auth=("ntlm",)) as server:
        source = WinRMSource(target(server, collectors=("dp_info",), site_code=SITE))
        outcome = poll_collectors(source, ("dp_info",), time.monotonic() + 20)["dp_info"]
        sessions = [protocol.transport.session for protocol in source._transport._protocols.values()]
        source.close()
    assert outcome.ok and sessions
    assert all(session is not None and session.hooks["response"] == [] for session in sessions)


def test_headers_keep_no_credential_and_challenges_keep_their_scheme() -> None:
    headers = {"Authorization": "Negotiate TlRMTVNTUAAB", "Cookie": "a=b", "Set-Cookie": "s=1",
               "WWW-Authenticate": 'Negotiate oRswGaADCgEA, Basic realm="WSMAN", Kerberos',
               "Proxy-Authorization": "Basic eDp5", "Content-Type": "application/soap+xml;charset=UTF-8"}
    assert safe_headers(headers) == {"WWW-Authenticate": "Negotiate, Basic, Kerberos",
                                     "Content-Type": "application/soap+xml;charset=UTF-8"}


# --- no secret over any transport ---------------------------------------------------------------------


Setup = Callable[[Any, Path], tuple[dict[str, Any], AuthConfig, TLSConfig]]


def _password(transport: str, **server: Any) -> Setup:
    """A transport signing in with the user's password: the server's options and the target's auth."""
    return lambda krb, folder: (server, AuthConfig(transport, USER, PASSWORD), TLSConfig())  # type: ignore[arg-type]


def _certificate(krb: Any, folder: Path) -> tuple[dict[str, Any], AuthConfig, TLSConfig]:
    ca = make_ca(str(folder))
    cert, key = issue_client_cert(str(folder), ca, "svc-cm-exporter", upn=UPN, stem="client")
    server = {"auth": ("certificate",), "tls": True, "client_ca": ca[0],
              "cert_mappings": [CertMapping(UPN, cert_thumbprint(ca[0]), USER)]}
    return server, AuthConfig("certificate"), TLSConfig(cert_file=cert, key_file=key)


def _kerberos(krb: Any, folder: Path) -> tuple[dict[str, Any], AuthConfig, TLSConfig]:
    auth = AuthConfig("kerberos", krb.user, krb.password, kerberos_hostname_override="cm01.corp.example.com")
    return {"auth": ("kerberos",), "kerberos_keytab": krb.service_keytab}, auth, TLSConfig()


def _key_lines(krb: Any, folder: Path) -> list[str]:
    return key_lines(*folder.glob("*key*.pem"))


@dataclass(frozen=True)
class Way:
    """One way to sign in: (kerberos fixture or None, a folder for files) -> the test server's
    options, the target's auth and TLS files; what must never be written; the scheme's token shapes."""

    setup: Setup
    secrets: Callable[[Any, Path], list[str]] = field(
        default=lambda krb, folder: [PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()])
    markers: tuple[str, ...] = ()
    kerberos: bool = False


# Adding a transport the test server offers is one line here.
WAYS: dict[str, Way] = {
    "basic_https": Way(_password("basic", auth=("basic",), tls=True)),
    "ntlm_http_sealed": Way(_password("ntlm", auth=("ntlm",))),
    "ntlm_https_strict_channel_binding": Way(_password("ntlm", auth=("ntlm",), tls=True, cbt="strict")),
    "credssp_https": Way(_password("credssp", auth=("credssp",), tls=True), markers=("MII",)),
    "credssp_http_sealed": Way(_password("credssp", auth=("credssp",)), markers=("MII",)),
    "certificate": Way(_certificate, secrets=_key_lines),
    "kerberos_http_sealed": Way(_kerberos, secrets=lambda krb, folder: [krb.password], markers=("YII",),
                                kerberos=True),
}
NEVER = ("Authorization", "NTLMSSP", "TlRMTVNTUA", "--Encrypted Boundary", "OriginalContent",
         "application/octet-stream")
# A scheme followed by a token (an error message may say "CredSSP token" or "Kerberos failed").
TOKEN = re.compile(r"\b(?:Negotiate|Kerberos|CredSSP|NTLM|Basic) [A-Za-z0-9+/]{20,}")
NEVER_IN_BODIES = ("HTTP-SPNEGO-session-encrypted", "HTTP-CredSSP-session-encrypted", "multipart/encrypted",
                   "multipart/x-multi-encrypted")


@pytest.fixture(params=sorted(WAYS))
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Way, Any]]:
    case = WAYS[request.param]
    krb: Kerberos | None = request.getfixturevalue("kerberos") if case.kerberos else None
    if krb is not None:
        for name, value in krb.env.items():
            monkeypatch.setenv(name, value)
    yield request.param, case, krb


def test_a_capture_holds_no_secret_over_each_transport(way: tuple[str, Way, Any], tmp_path: Path) -> None:
    name, case, krb = way
    keys, capture = tmp_path / "keys", tmp_path / "capture"
    keys.mkdir()
    options, auth, tls = case.setup(krb, keys)
    # The provider echoes the password in a fault (its machine name): the scrub must catch it. The
    # fault answers a Pull: with CredSSP, a fault answering the request that completes the
    # handshake is taken by requests_credssp for a refused logon.
    echoed = auth.password is not None
    if echoed:
        options = {**options, "machine": f"{auth.password}.corp.example.com"}
    with WSManServer(DATA, users={USER: PASSWORD}, page_bytes=1500, **options) as server:
        server.fault_next("pull", "access_denied_wsman", class_name="SMS_DPStatusInfo")
        summary = record_poll(target(server, collectors=("package_status", "dp_status"), auth=auth, tls=tls), capture)
    assert summary.collectors["package_status"].ok, summary
    assert summary.collectors["dp_status"].reason == "auth"
    written = files(capture)
    for file, text in written.items():
        for word in (*case.secrets(krb, keys), *case.markers, *NEVER):
            assert word not in text, f"{name}: {word!r} in {file}"
        assert not TOKEN.search(text), f"{name}: a token in {file}: {TOKEN.search(text)}"
        if file.endswith(".xml"):
            assert text.startswith("<s:Envelope"), f"{name}: {file} is not the plain SOAP text"
            for word in NEVER_IN_BODIES:
                assert word not in text, f"{name}: {word!r} in {file}"
    if echoed:
        assert any(SCRUBBED in text for file, text in written.items() if file.endswith(".reply.xml"))
    index = json.loads(written[INDEX])
    sealed = server.tls is False
    assert all(e["encrypted"] == sealed for e in index["exchanges"] if e["status"] == 200), name


# --- anonymized ---------------------------------------------------------------------------------------


def originals(data: Dataset) -> list[str]:
    """Every name of the estate the data set holds: hosts, domain, site code, package IDs, names."""
    site = data[NAMESPACE]
    hosts = [PROVIDER_MACHINE, site_server(SITE), *(dp_host(SITE, n) for n in range(1, 4))]
    names = [row["Name"] for row in site[PACKAGE_BASECLASS]] + [row["Name"] for row in site[DP_GROUP]]
    return [*hosts, *(host.partition(".")[0] for host in hosts), "corp.example.com", SITE, USER,
            USER.rpartition("\\")[2], *(row["PackageID"] for row in site[PACKAGE_BASECLASS]), *names]


def escaped(text: str) -> set[str]:
    return {text, text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"), json.dumps(text)[1:-1]}


def test_an_anonymized_capture_names_nothing_of_the_estate_and_replays_to_the_same_rows(tmp_path: Path) -> None:
    with WSManServer(DATA, users={USER: PASSWORD}, auth=("ntlm",), page_bytes=2000) as server:
        server.class_faults = {"SMS_DistributionPointDriveInfo": "access_denied_wsman"}  # a Machine= to hide
        summary = record_poll(target(server), tmp_path, anonymize=True)
    assert [name for name, o in summary.collectors.items() if not o.ok] == ["dp_drive"]
    written = "\n".join(files(tmp_path).values())
    lowered = written.lower()
    for original in originals(DATA):
        for form in escaped(original):
            assert form not in written and (len(form) < 4 or form.lower() not in lowered), original
    assert "S01" in written and "site_S01" in written
    recorded, got = replay(tmp_path)
    assert_same_outcome(summary.collectors, recorded)  # the index's summary is the poll's (its messages anonymized)
    assert_same_outcome(recorded, got)


NAL = '["Display=\\\\DP01.corp.example.com\\"]MSWNET:["SMS_SITE=ABC"]\\\\DP01.corp.example.com\\'
REQUEST = (
    '<s:Envelope><s:Header><a:To>http://cm01.corp.example.com:5985/wsman</a:To>'
    '<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_abc/*</w:ResourceURI>'
    '<a:MessageID>uuid:ABC00001-0000-4000-8000-000000000ABC</a:MessageID></s:Header><s:Body><n:Pull>'
    '<n:EnumerationContext>uuid:ABC00002-0000-4000-8000-000000000ABC</n:EnumerationContext></n:Pull></s:Body>'
    '</s:Envelope>'
)
REPLY = (
    '<s:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><s:Body><w:Items><w:XmlFragment>'
    f'<Name>Tools &amp; &lt;x86&gt;</Name><PackageID>ABC00012</PackageID><PkgServer>{NAL}</PkgServer>'
    '<SiteCode>ABC</SiteCode><Status>3</Status><UpdateTime><Datetime>2024-05-01T10:00:00.5Z</Datetime></UpdateTime>'
    '<Version xsi:nil="true"/><ShareName></ShareName><IsPXE>true</IsPXE></w:XmlFragment>'
    '<p:SMS_ProviderLocation xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/SMS_ProviderLocation">'
    '<p:Machine>CM01.corp.example.com</p:Machine><p:NamespacePath>\\\\CM01\\root\\sms\\site_ABC</p:NamespacePath>'
    '</p:SMS_ProviderLocation></w:Items><f:WSManFault Code="5" Machine="CM01.corp.example.com"/></s:Body></s:Envelope>'
)


def test_anonymizing_keeps_what_the_parsers_read_and_maps_each_name_one_way() -> None:
    anonymizer = Anonymizer(accounts=["CORP\\svc-cm-exporter"])
    for document in (REQUEST, REPLY):
        anonymizer.learn_xml(document.encode(), "SMS_PackageBaseclass")
    request = anonymizer.xml(REQUEST.encode(), "SMS_PackageBaseclass").decode()
    reply = anonymizer.xml(REPLY.encode(), "SMS_PackageBaseclass").decode()
    assert "<a:To>http://host01.dom1.example:5985/wsman</a:To>" in request  # the provider, lower case as given
    assert "/root/sms/site_s01/*</w:ResourceURI>" in request  # the URI's site keeps its case
    assert "uuid:ABC00001-0000-4000-8000-000000000ABC" in request  # message IDs and contexts untouched
    assert "<n:EnumerationContext>uuid:ABC00002-0000-4000-8000-000000000ABC</n:EnumerationContext>" in request
    assert ('<PkgServer>["Display=\\\\HOST02.dom1.example\\"]MSWNET:["SMS_SITE=S01"]\\\\HOST02.dom1.example\\'
            '</PkgServer>') in reply
    assert "<PackageID>S0100012</PackageID>" in reply and "<SiteCode>S01</SiteCode>" in reply  # digits kept
    assert "<Name>Package 0001</Name>" in reply
    for kept in ("<Status>3</Status>", "<Datetime>2024-05-01T10:00:00.5Z</Datetime>", '<Version xsi:nil="true"/>',
                 "<ShareName></ShareName>", "<IsPXE>true</IsPXE>", 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"',
                 "/wmi/root/sms/SMS_ProviderLocation"):
        assert kept in reply, kept
    assert "<p:Machine>HOST01.dom1.example</p:Machine>" in reply and 'Machine="HOST01.dom1.example"' in reply
    assert "<p:NamespacePath>\\\\HOST01\\root\\sms\\site_S01</p:NamespacePath>" in reply
    assert anonymizer.text("rejected CORP\\svc-cm-exporter on cm01.corp.example.com:5985 (site ABC)") == \
        "rejected DOMAIN1\\account01 on host01.dom1.example:5985 (site S01)"
    assert anonymizer.wql("SELECT Name FROM SMS_Package WHERE SourceSite = 'ABC'") == \
        "SELECT Name FROM SMS_Package WHERE SourceSite = 'S01'"


def test_a_site_code_spelled_like_an_xml_reference_leaves_the_reference_alone() -> None:
    anonymizer = Anonymizer()
    document = b"<r><SiteCode>AMP</SiteCode><Name>A &amp; B</Name><Description>AMP &amp; co</Description></r>"
    anonymizer.learn_xml(document, "SMS_Site")
    assert anonymizer.xml(document, "SMS_Site") == \
        b"<r><SiteCode>S01</SiteCode><Name>Name 0001</Name><Description>Text 0002</Description></r>"


# --- through the command: --check-target --record --anonymize -------------------------------------


def test_check_target_records_an_anonymized_capture_that_names_nothing_and_replays_the_same(tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    with WSManServer(DATA, users={USER: PASSWORD}, auth=("ntlm",), page_bytes=2000) as server:
        server.class_faults = {"SMS_DistributionPointDriveInfo": "access_denied_wsman"}
        config = tmp_path / "config.yaml"
        config.write_text(
            f"defaults: {{collectors: [{', '.join(SPECS)}], parallel_enumerations: 2}}\n"
            f"targets:\n  - {{name: p01, source: winrm, host: 127.0.0.1, port: {server.port}, scheme: http,\n"
            f"     auth: {{transport: ntlm, username: '{USER}', password: '{PASSWORD}'}}}}\n")
        result = subprocess.run([console_script(), "--config.file", str(config), "--check-target", "p01",
                                 "--record", str(capture), "--anonymize"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr  # dp_drive was refused
    assert "FAIL  collector dp_drive" in result.stdout and f"are in {capture} (anonymized)" in result.stderr
    index = json.loads((capture / INDEX).read_text())
    assert index["anonymized"] is True
    assert index["summary"]["collectors"]["dp_drive"]["ok"] is False
    assert index["summary"]["collectors"]["package_status"]["rows"] == len(DATA[NAMESPACE]["SMS_PackageStatus"])
    assert {e["action"] for e in index["exchanges"]} >= {"Identify", "Enumerate", "Pull"}
    written = "\n".join(files(capture).values())
    for original in originals(DATA):
        for form in escaped(original):
            assert form not in written and (len(form) < 4 or form.lower() not in written.lower()), original
    assert PASSWORD not in written and PASSWORD not in result.stdout + result.stderr
    recorded, got = replay(capture)
    assert_same_outcome(recorded, got)


def test_record_needs_a_winrm_target_and_check_target(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("targets:\n  - {name: demo, source: demo}\n")
    result = subprocess.run([console_script(), "--config.file", str(config), "--check-target", "demo",
                             "--record", str(tmp_path / "new")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "not a winrm target" in result.stderr, result.stderr
    alone = subprocess.run([console_script(), "--config.file", str(config), "--anonymize"],
                           capture_output=True, text=True, timeout=60)
    assert alone.returncode == 1 and "go with --check-target" in alone.stderr
