"""WinRMSource end to end: real pywinrm against the loopback WS-Management server (tests/wsman_server.py).

Each test is one behaviour a user depends on: every row of the data set arrives (both item
shapes, paging as Windows pages), authentication and TLS as configured, each failure mapped to
the reason `sccm_poll_errors_total` counts, deadlines kept, the spec's pitfalls survived, and the
password never written anywhere.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import traceback
from collections.abc import Generator, Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from conftest import collector_rows
from datasets import (
    DP_CONTENT_SUMMARIZER,
    make_site,
    provider_locations,
    single_site_dataset,
    site_namespace,
    three_site_dataset,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from wsman_server import WSManServer, parse_wql

from exporter.collectors.package_status.row import QUERY, PackageStatusRow
from exporter.config import AuthConfig, TargetConfig, TLSConfig
from exporter.errors import PollError
from exporter.rows import host_from_nal
from exporter.winrm import lanes
from exporter.winrm.plan import slice_predicates
from exporter.winrm.source import WinRMSource

USER = "CORP\\svc-cm-exporter"
PASSWORD = "Pa55-w0rd-N3ver-Logged"
DENIED = "CORP\\no-rights"
USERS = {USER: PASSWORD, DENIED: "Den1ed-Pa55-w0rd"}
STAR_URI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_ABC/*"
CLASS_URI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_ABC/SMS_PackageStatus"
SMALL = single_site_dataset("ABC", packages=30, servers=5, seed=7)

Key = tuple[str, str, str, int, int, int]


# --- helpers ------------------------------------------------------------------------------------


def target(
    server: WSManServer,
    *,
    transport: str = "ntlm",
    user: str = USER,
    password: str = PASSWORD,
    site_code: str | None = "ABC",
    timeout: float = 30,
    encryption: str = "auto",
    ca_file: str | None = None,
    parallel: int = 1,
) -> TargetConfig:
    """One enumeration unless `parallel` says otherwise: most tests here follow one walk's requests."""
    return TargetConfig(
        name="abc",
        source="winrm",
        interval=300,
        timeout=timeout,
        per_row="all",
        stale_after=900,
        host="127.0.0.1",
        port=server.port,
        scheme="https" if server.tls else "http",
        site_code=site_code,
        auth=AuthConfig(
            transport=transport,  # type: ignore[arg-type]
            username=user,
            password=password,
            message_encryption=encryption,  # type: ignore[arg-type]
            allow_unencrypted=True,
        ),
        tls=TLSConfig(verify=True, ca_file=ca_file),
        parallel_enumerations=parallel,
    )


def expected(rows: Iterable[dict[str, Any]]) -> dict[Key, tuple[str, float | None]]:
    """What the exporter must make of the data set's rows: key -> (raw PkgServer, Unix time)."""
    result: dict[Key, tuple[str, float | None]] = {}
    for row in rows:
        moment: datetime | None = row["UpdateTime"]
        key = (
            row["SiteCode"],
            row["PackageID"],
            host_from_nal(row["PkgServer"]),
            row["Type"],
            row["Status"],
            row["Personality"],
        )
        result[key] = (row["PkgServer"], moment.timestamp() if moment else None)
    return result


def by_key(rows: Iterable[PackageStatusRow]) -> dict[Key, tuple[str, float | None]]:
    """Rows as the collector keeps them: one per key, the last one winning."""
    return {row.key: (row.pkg_server, row.update_time) for row in rows}


def assert_same_rows(got: dict[Key, tuple[str, float | None]], want: dict[Key, tuple[str, float | None]]) -> None:
    assert got.keys() == want.keys()
    for key, (pkg_server, moment) in want.items():
        assert got[key][0] == pkg_server
        assert got[key][1] == (pytest.approx(moment, abs=1e-6) if moment is not None else None), key


def poll(source: WinRMSource, seconds: float = 30) -> list[PackageStatusRow]:
    return list(collector_rows(source, "package_status", time.monotonic() + seconds))


def poll_error(source: WinRMSource, seconds: float = 30) -> PollError:
    with pytest.raises(PollError) as caught:
        poll(source, seconds)
    return caught.value


def abc_rows(data: dict[str, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    return data[site_namespace("ABC")]["SMS_PackageStatus"]


@pytest.fixture
def server() -> Iterator[WSManServer]:
    """One small site (138 rows) in pages of ~8 KB, so that a walk takes several Pulls."""
    with WSManServer(SMALL, users=USERS, denied_users=[DENIED], page_bytes=8192) as srv:
        yield srv


@pytest.fixture(scope="module")
def big() -> Iterator[WSManServer]:
    """Three sites, ~2,900 rows: pages of ~75 KB as Windows sends them."""
    with WSManServer(three_site_dataset(), users=USERS) as srv:
        yield srv


# --- every row, both shapes, paging ---------------------------------------------------------------


def test_full_walk_returns_exactly_the_data_set_with_ntlm_message_encryption(big: WSManServer) -> None:
    big.clear_requests()
    rows = poll(WinRMSource(target(big)))
    want = expected(abc_rows(three_site_dataset()))
    assert len(rows) == len(want)  # no restart happened, so no row twice
    assert_same_rows(by_key(rows), want)
    log = big.requests
    assert all(record.encrypted and record.status == 200 for record in log)
    assert all(record.user == USER for record in log)


def test_paging_first_batch_of_one_then_75kb_pages_following_the_newest_context(big: WSManServer) -> None:
    big.clear_requests()
    rows = poll(WinRMSource(target(big)))
    log = big.requests
    enumerate_, pulls = log[0], log[1:]
    assert (enumerate_.action, enumerate_.items, enumerate_.optimize) == ("enumerate", 1, True)
    assert len(pulls) >= 5 and all(record.action == "pull" for record in pulls)
    assert sum(record.items for record in log) == len(rows)
    for previous, record in zip(log, pulls, strict=False):
        assert record.context_in == previous.context_out  # always the latest context
    assert pulls[-1].end_of_sequence and pulls[-1].context_out is None
    for record in pulls[:-1]:
        assert 60_000 < record.envelope_bytes < 80 * 1024
    # MaxElements asks for as many items as fill the 512000-byte envelope, no more: a guess of
    # 1 KB per item first, then the largest bytes per item seen (with a margin).
    assert enumerate_.max_elements == (512000 - 4096) // 1024
    item_bytes = max(record.envelope_bytes / record.items for record in pulls[:-1])
    for record in pulls[1:]:
        assert record.max_elements is not None
        assert 0.6 * 512000 < record.max_elements * item_bytes <= 512000


def test_request_log_shows_envelope_size_operation_timeout_and_the_wql_select_list(server: WSManServer) -> None:
    poll(WinRMSource(target(server)), seconds=20)
    log = server.requests
    assert {record.max_envelope_size for record in log} == {512000}
    enumerate_ = log[0]
    assert enumerate_.resource_uri == STAR_URI
    assert enumerate_.wql == QUERY.wql
    assert (
        enumerate_.wql
        == "SELECT PackageID, PkgServer, Personality, SiteCode, Status, Type, UpdateTime FROM SMS_PackageStatus"
    )
    for record in log:
        assert record.operation_timeout is not None
        seconds = float(record.operation_timeout.removeprefix("PT").removesuffix("S"))
        assert 0 < seconds < 20  # below the read timeout, which is the time left


def test_select_star_shape_gives_the_same_rows(server: WSManServer) -> None:
    rows = poll(WinRMSource(target(server), property_list=False))
    assert_same_rows(by_key(rows), expected(abc_rows(SMALL)))
    log = server.requests
    assert log[0].resource_uri == CLASS_URI and log[0].wql is None
    assert {record.resource_uri for record in log} == {CLASS_URI}


def test_everything_in_the_first_response() -> None:
    with WSManServer(SMALL, users=USERS, first_batch=32000, page_bytes=10**7) as srv:
        rows = poll(WinRMSource(target(srv)))
        assert [record.action for record in srv.requests] == ["enumerate"]
    assert_same_rows(by_key(rows), expected(abc_rows(SMALL)))


def test_empty_class() -> None:
    data: dict[str, dict[str, list[dict[str, Any]]]] = {site_namespace("ABC"): {"SMS_PackageStatus": []}}
    with WSManServer(data, users=USERS) as srv:
        assert poll(WinRMSource(target(srv))) == []


def test_site_code_discovered_once_from_provider_location(big: WSManServer) -> None:
    big.clear_requests()
    source = WinRMSource(target(big, site_code=None))
    assert source.site_code() is None
    rows = poll(source)
    assert source.site_code() == "ABC"
    assert {row.site for row in rows} == {"ABC"}
    first = big.requests
    assert first[0].resource_uri == "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/SMS_ProviderLocation"
    big.clear_requests()
    poll(source)
    assert all("ProviderLocation" not in (record.resource_uri or "") for record in big.requests)


def test_discovery_without_a_local_site_says_to_configure_it() -> None:
    data = {"root\\SMS": {"SMS_ProviderLocation": provider_locations(["ABC"], "CM01", local_site="")}}
    with WSManServer(data, users=USERS) as srv:
        error = poll_error(WinRMSource(target(srv, site_code=None)))
    assert error.reason == "other" and "set site_code" in str(error)


def test_bad_row_is_a_parse_error_naming_the_field_and_releases_the_context(server: WSManServer) -> None:
    rows = make_site("ABC", 30, 5, 7)
    rows[60]["Status"] = "broken"
    server.set_rows(site_namespace("ABC"), "SMS_PackageStatus", rows)
    error = poll_error(WinRMSource(target(server)))
    assert error.reason == "parse"
    assert "row 61" in str(error) and "Status" in str(error)
    assert server.requests[-1].action == "release"
    assert server.open_contexts() == 0


# --- authentication and TLS ----------------------------------------------------------------------


def test_basic_auth_over_https_with_the_throwaway_cert_as_ca_file() -> None:
    with WSManServer(SMALL, users=USERS, tls=True, auth=("basic",)) as srv:
        assert srv.ca_file is not None
        rows = poll(WinRMSource(target(srv, transport="basic", ca_file=srv.ca_file)))
        assert all(not record.encrypted for record in srv.requests)  # TLS protects it, not SPNEGO
    assert_same_rows(by_key(rows), expected(abc_rows(SMALL)))


def test_ntlm_over_https_with_channel_binding() -> None:
    with WSManServer(SMALL, users=USERS, tls=True, auth=("ntlm",), cbt=True) as srv:
        rows = poll(WinRMSource(target(srv, ca_file=srv.ca_file)))
    assert_same_rows(by_key(rows), expected(abc_rows(SMALL)))


def test_untrusted_certificate_says_what_to_set_and_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with WSManServer(SMALL, users=USERS, tls=True, auth=("basic",)) as srv:
        assert srv.ca_file is not None
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", srv.ca_file)  # pywinrm's default would trust this
        error = poll_error(WinRMSource(target(srv, transport="basic")))
    assert error.reason == "connection"
    assert str(error).startswith("TLS certificate of 127.0.0.1 not trusted")
    assert "tls.ca_file" in str(error)


def test_environment_proxy_is_not_used(monkeypatch: pytest.MonkeyPatch, server: WSManServer) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert len(poll(WinRMSource(target(server)))) == len(abc_rows(SMALL))


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_wrong_password_is_auth(server: WSManServer, transport: str) -> None:
    error = poll_error(WinRMSource(target(server, transport=transport, password="wrong-password")))
    assert error.reason == "auth"
    assert USER in str(error) and "401" in str(error)


def test_unencrypted_body_refused_like_windows_is_auth() -> None:
    with WSManServer(SMALL, users=USERS, auth=("basic",), allow_unencrypted=False) as srv:
        error = poll_error(WinRMSource(target(srv, transport="basic")))
    assert error.reason == "auth"


def test_connection_refused_is_connection() -> None:
    with WSManServer(SMALL, users=USERS) as srv:
        gone = target(srv)
    error = poll_error(WinRMSource(gone))
    assert error.reason == "connection"
    assert "Connection refused" in str(error) and f"127.0.0.1:{gone.port}" in str(error)


# --- faults ------------------------------------------------------------------------------------------


def test_wrong_site_code_is_invalid_namespace(server: WSManServer) -> None:
    error = poll_error(WinRMSource(target(server, site_code="XYZ")))
    assert (error.reason, error.wmi_code) == ("wmi_fault", 0x8004100E)
    assert "invalid namespace root\\SMS\\site_XYZ: wrong site_code?" in str(error)


@pytest.mark.parametrize("property_list", [True, False])
def test_missing_class_is_invalid_class(property_list: bool) -> None:
    data: dict[str, dict[str, list[dict[str, Any]]]] = {site_namespace("ABC"): {"SMS_Package": []}}
    with WSManServer(data, users=USERS) as srv:
        error = poll_error(WinRMSource(target(srv), property_list=property_list))
    assert (error.reason, error.wmi_code) == ("wmi_fault", 0x80041010)
    assert "invalid class SMS_PackageStatus in root\\SMS\\site_ABC" in str(error)


def test_access_denied_is_auth(server: WSManServer) -> None:
    error = poll_error(WinRMSource(target(server, user=DENIED, password=USERS[DENIED])))
    assert (error.reason, error.wmi_code) == ("auth", 0x80041003)
    assert "access denied" in str(error)


@pytest.mark.parametrize(
    ("kind", "reason", "code"),
    [
        ("invalid_namespace_uri", "wmi_fault", 0x80338000),
        ("cannot_process_filter", "wmi_fault", 0x80041017),
        ("access_denied_wsman", "auth", 5),
        ("provider_failure", "wmi_fault", 0x80041001),
        ("quota", "wmi_fault", 0x803381A6),
        ("encoding_limit", "wmi_fault", 0x80338111),
        ("schema_validation", "wmi_fault", 0x80338041),
        ("action_not_supported", "wmi_fault", 0x80338013),
    ],
)
def test_injected_fault_on_enumerate(server: WSManServer, kind: str, reason: str, code: int) -> None:
    server.fault_next("enumerate", kind)
    error = poll_error(WinRMSource(target(server)))
    assert (error.reason, error.wmi_code) == (reason, code)


@pytest.mark.parametrize("kind", ["timed_out", "invalid_context"])
def test_enumeration_dying_once_mid_walk_is_restarted(server: WSManServer, kind: str) -> None:
    server.fault_next("pull", kind)
    rows = poll(WinRMSource(target(server)))
    assert_same_rows(by_key(rows), expected(abc_rows(SMALL)))
    assert [record.action for record in server.requests].count("enumerate") == 2


@pytest.mark.parametrize(("kind", "reason"), [("timed_out", "timeout"), ("invalid_context", "wmi_fault")])
def test_enumeration_dying_twice_fails_the_poll(server: WSManServer, kind: str, reason: str) -> None:
    server.fault_next("pull", kind)
    server.fault_next("pull", kind)
    error = poll_error(WinRMSource(target(server)))
    assert error.reason == reason


# --- deadlines -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["enumerate", "pull"])
def test_hanging_provider_times_out_within_the_deadline(server: WSManServer, where: str) -> None:
    server.hang = {where}
    started = time.monotonic()
    error = poll_error(WinRMSource(target(server)), seconds=2.5)
    elapsed = time.monotonic() - started
    server.hang = set()
    assert error.reason == "timeout"
    assert elapsed < 2.5 + 1.2


def test_host_that_accepts_but_never_answers_times_out() -> None:
    with WSManServer(SMALL, users=USERS, tls=True) as srv:
        srv.hang_on_connect = True
        started = time.monotonic()
        error = poll_error(WinRMSource(target(srv, ca_file=srv.ca_file)), seconds=2)
        elapsed = time.monotonic() - started
        srv.hang_on_connect = False
    assert error.reason == "timeout"
    assert elapsed < 2 + 1.2


def test_deadline_passing_between_pages_fails_and_releases_the_context(server: WSManServer) -> None:
    rows = collector_rows(WinRMSource(target(server)), "package_status", time.monotonic() + 1.5)
    next(rows)  # the Enumerate's one item
    time.sleep(1.6)
    with pytest.raises(PollError) as caught:
        list(rows)
    assert caught.value.reason == "timeout"
    assert server.requests[-1].action == "release"
    assert server.open_contexts() == 0


def test_consumer_stopping_early_releases_the_context(server: WSManServer) -> None:
    rows = collector_rows(WinRMSource(target(server)), "package_status", time.monotonic() + 30)
    for _ in range(5):
        next(rows)
    rows.close()  # type: ignore[attr-defined]
    assert [record.action for record in server.requests][-1] == "release"
    assert server.open_contexts() == 0


# --- the spec's pitfalls -----------------------------------------------------------------------------


def test_dropped_keepalive_connection_is_resent_transparently(
    server: WSManServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    server.drop_connection_after_requests = 2
    rows = poll(WinRMSource(target(server)))
    resends = [r for r in caplog.records if r.getMessage() == "connection dropped; resending once"]
    assert resends and "HTTP 400 with an empty body" in resends[0].__dict__["err"]
    assert resends[0].__dict__["target"] == "abc"
    assert "restarting" not in caplog.text
    assert len(rows) == len(abc_rows(SMALL))  # no restart: the lost request was never processed
    assert_same_rows(by_key(rows), expected(abc_rows(SMALL)))
    assert server.ntlm_handshakes >= 3
    assert len({record.connection for record in server.requests}) >= 3


def test_connection_reset_mid_pull_restarts_the_enumeration(server: WSManServer) -> None:
    server.reset_mid_pull = 1
    rows = poll(WinRMSource(target(server)))
    assert_same_rows(by_key(rows), expected(abc_rows(SMALL)))
    log = server.requests
    assert [record.action for record in log].count("enumerate") == 2
    assert "invalid_context" in [record.fault for record in log]


def test_expired_context_mid_walk_restarts_and_every_row_still_arrives(big: WSManServer) -> None:
    big.clear_requests()
    rows_iter = collector_rows(WinRMSource(target(big)), "package_status", time.monotonic() + 30)
    rows: list[PackageStatusRow] = []
    while sum(record.action == "pull" for record in big.requests) < 3:
        rows.append(next(rows_iter))
    big.expire_contexts()
    rows.extend(rows_iter)
    want = expected(abc_rows(three_site_dataset()))
    assert len(rows) > len(want)  # rows before the restart came again: the collector de-duplicates
    assert_same_rows(by_key(rows), want)
    assert [record.action for record in big.requests].count("enumerate") == 2


def test_only_one_restart_per_poll(server: WSManServer) -> None:
    rows = collector_rows(WinRMSource(target(server)), "package_status", time.monotonic() + 30)
    next(rows)
    server.expire_contexts()
    next(rows)  # the restarted enumeration's first item
    server.expire_contexts()
    with pytest.raises(PollError) as caught:
        list(rows)
    assert (caught.value.reason, caught.value.wmi_code) == ("wmi_fault", 0x8033801B)


# --- secrets --------------------------------------------------------------------------------------------


def failures(server: WSManServer) -> Iterator[PollError]:
    """One failure of each kind, with the real password configured (or offered wrongly)."""
    yield poll_error(WinRMSource(target(server, password=PASSWORD + "x")))
    yield poll_error(WinRMSource(target(server, transport="basic", password=PASSWORD + "x")))
    yield poll_error(WinRMSource(target(server, site_code="XYZ")))
    yield poll_error(WinRMSource(target(server, user=DENIED, password=USERS[DENIED])))
    server.fault_next("enumerate", "provider_failure")
    yield poll_error(WinRMSource(target(server, transport="basic")))
    server.hang = {"pull"}
    yield poll_error(WinRMSource(target(server)), seconds=1.5)
    server.hang = set()


def test_password_never_in_errors_or_logs(server: WSManServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server.drop_connection_after_requests = 3
    poll(WinRMSource(target(server)))
    poll(WinRMSource(target(server, transport="basic")))
    server.drop_connection_after_requests = None
    for error in failures(server):
        text = "".join(traceback.format_exception(error)) + repr(error)
        assert PASSWORD not in text
    assert caplog.records  # the capture did see the exporter, pywinrm, urllib3 and the server
    assert PASSWORD not in caplog.text
    # Structured fields (extra=) reach the log line too: look at every attribute of every record.
    assert all(PASSWORD not in repr(vars(record)) for record in caplog.records)
    assert PASSWORD not in repr(target(server))


def test_password_echoed_in_an_error_is_masked() -> None:
    """Defence in depth: if text in an error ever held the password, it is masked."""
    user = "CORP\\echo"
    with WSManServer(SMALL, users={user: "site_XYZ"}) as srv:
        error = poll_error(WinRMSource(target(srv, user=user, password="site_XYZ", site_code="XYZ")))
    assert error.wmi_code == 0x8004100E
    assert "site_XYZ" not in str(error) and "root\\SMS\\********" in str(error)


def test_without_ca_file_the_system_ca_bundle_is_trusted(server: WSManServer) -> None:
    source = WinRMSource(replace(target(server), scheme="https", tls=TLSConfig(verify=True, ca_file=None)))
    session = source._transport._new_protocol().transport.build_session()
    assert session.verify == ssl.get_default_verify_paths().cafile


# --- parallel enumerations over PackageID slices ----------------------------------------------------


@pytest.mark.parametrize("parallel", [1, 2, 3, 4, 16])
@settings(max_examples=60, deadline=None)
@given(package_id=st.text(alphabet="0123456789ABCDEFabcdefXYZ_-%[]' ", max_size=9))
def test_slices_cover_every_package_id_exactly_once(parallel: int, package_id: str) -> None:
    predicates = slice_predicates(parallel)
    assert len(predicates) == min(parallel, 16)
    matching = [
        predicate
        for predicate in predicates
        if predicate is None or parse_wql(f"SELECT * FROM C WHERE {predicate}").where({"PackageID": package_id})  # type: ignore[misc]
    ]
    assert len(matching) == 1, (package_id, matching)


def test_parallel_enumerations_return_every_row_exactly_once_over_four_connections(big: WSManServer) -> None:
    big.clear_requests()
    rows = poll(WinRMSource(target(big, parallel=4)))
    want = expected(abc_rows(three_site_dataset()))
    assert len(rows) == len(want)  # no row twice, none missing
    assert_same_rows(by_key(rows), want)
    enumerates = [record for record in big.requests if record.action == "enumerate"]
    assert sorted(record.wql or "" for record in enumerates) == sorted(
        f"{QUERY.wql} WHERE {predicate}" for predicate in slice_predicates(4)
    )
    assert len({record.connection for record in big.requests}) == 4
    assert big.open_contexts() == 0


def test_parallel_enumerations_with_unusual_package_ids() -> None:
    rows = make_site("ABC", 30, 4, 3)
    for row, odd in zip(rows, ["abc0001f", "ABC0001Z", "P-1_x", "X", "ABC0001%", "ABC0001'"], strict=False):
        row["PackageID"] = odd
    data = {site_namespace("ABC"): {"SMS_PackageStatus": rows}}
    with WSManServer(data, users=USERS, page_bytes=4096) as srv:
        got = poll(WinRMSource(target(srv, parallel=5)))
    assert len(got) == len(rows)
    assert_same_rows(by_key(got), expected(rows))


def test_one_slice_failing_fails_the_poll_and_the_others_are_released(server: WSManServer) -> None:
    server.fault_next("pull", "provider_failure")
    error = poll_error(WinRMSource(target(server, parallel=4)))
    assert (error.reason, error.wmi_code) == ("wmi_fault", 0x80041001)
    assert server.open_contexts() == 0


def test_one_slice_dying_mid_walk_is_restarted_alone(server: WSManServer) -> None:
    server.fault_next("pull", "timed_out")
    rows = poll(WinRMSource(target(server, parallel=4)))
    assert_same_rows(by_key(rows), expected(abc_rows(SMALL)))
    assert [record.action for record in server.requests].count("enumerate") == 5


def test_a_bad_row_in_a_slice_names_the_slice(server: WSManServer) -> None:
    rows = make_site("ABC", 30, 5, 7)
    rows[60]["Status"] = "broken"
    server.set_rows(site_namespace("ABC"), "SMS_PackageStatus", rows)
    error = poll_error(WinRMSource(target(server, parallel=4)))
    assert error.reason == "parse" and "Status" in str(error)
    assert "enumeration " in str(error) and " of 4 (PackageID LIKE '%[" in str(error)
    assert server.open_contexts() == 0


def test_parallel_consumer_stopping_early_releases_every_context(server: WSManServer) -> None:
    rows = collector_rows(WinRMSource(target(server, parallel=4)), "package_status", time.monotonic() + 30)
    for _ in range(5):
        next(rows)
    rows.close()  # type: ignore[attr-defined]
    assert server.open_contexts() == 0


def test_a_hanging_slice_times_out_within_the_deadline(server: WSManServer) -> None:
    server.stall_after_pages = 3
    started = time.monotonic()
    error = poll_error(WinRMSource(target(server, parallel=4)), seconds=2.5)
    elapsed = time.monotonic() - started
    server.stall_after_pages = None
    assert error.reason == "timeout"
    assert elapsed < 2.5 + 1.5


# --- a provider refusing the slices: one enumeration instead, in the same poll ---------------------

REFUSED = "sliced enumerations refused; reading the class in one enumeration until the configuration changes"
PACKAGE_STATUS = QUERY.class_name


def enumerate_wqls(server: WSManServer, class_name: str = PACKAGE_STATUS) -> list[str | None]:
    return [record.wql for record in server.requests_of(class_name, "enumerate")]


def sliced(wql: str | None) -> bool:
    return wql is not None and " LIKE " in wql


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage() == REFUSED]


@pytest.mark.parametrize("kind", ["cannot_process_filter", "invalid_query"])
def test_refused_slices_give_every_row_exactly_once_in_the_same_poll(server: WSManServer, kind: str) -> None:
    server.refuse_like = {PACKAGE_STATUS: kind}
    rows = poll(WinRMSource(target(server, parallel=4)))
    want = expected(abc_rows(SMALL))
    assert len(rows) == len(want)  # no row twice, none missing
    assert_same_rows(by_key(rows), want)
    enumerates = server.requests_of(PACKAGE_STATUS, "enumerate")
    assert [(r.fault, sliced(r.wql)) for r in enumerates[:4]] == [(kind, True)] * 4
    assert [(r.wql, r.status) for r in enumerates[4:]] == [(QUERY.wql, 200)]
    assert server.open_contexts() == 0


def test_one_slice_refused_while_the_others_were_answered_still_gives_every_row_once(server: WSManServer) -> None:
    # The other three slices' Enumerates succeed, and their first pages are held back: none of
    # their rows may reach the collector before the one enumeration gives them all.
    server.fault_next("enumerate", "cannot_process_filter", class_name=PACKAGE_STATUS)
    rows = poll(WinRMSource(target(server, parallel=4)))
    want = expected(abc_rows(SMALL))
    assert len(rows) == len(want)
    assert_same_rows(by_key(rows), want)
    enumerates = server.requests_of(PACKAGE_STATUS, "enumerate")
    assert sorted(r.fault or "" for r in enumerates[:4]) == ["", "", "", "cannot_process_filter"]
    assert all(sliced(r.wql) for r in enumerates[:4]) and [r.wql for r in enumerates[4:]] == [QUERY.wql]
    assert server.open_contexts() == 0  # the answered slices were released


def test_the_refusal_is_logged_once_and_later_polls_send_no_sliced_enumerate(
    server: WSManServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    server.refuse_like = {PACKAGE_STATUS: "cannot_process_filter"}
    source = WinRMSource(target(server, parallel=4))
    want = expected(abc_rows(SMALL))
    rows = poll(source)
    assert len(rows) == len(want)
    (record,) = refusals(caplog)
    assert (record.name, record.levelno) == ("exporter.winrm", logging.WARNING)
    fields = record.__dict__
    assert (fields["target"], fields["class"], fields["slices"], fields["slice_by"], fields["reason"]) == (
        "abc", PACKAGE_STATUS, 4, "PackageID", "wmi_fault")
    assert "refused the WQL query on SMS_PackageStatus" in fields["err"]
    assert fields["err"].endswith("(code 0x80041017)")
    for _ in range(2):
        server.clear_requests()
        rows = poll(source)
        assert len(rows) == len(want)
        assert_same_rows(by_key(rows), want)
        assert enumerate_wqls(server) == [QUERY.wql]  # straight to the one enumeration
        assert len({r.connection for r in server.requests}) == 1
    assert len(refusals(caplog)) == 1
    # A new source (what a reload that changes the target builds) tries the slices again.
    server.clear_requests()
    assert len(poll(WinRMSource(target(server, parallel=4)))) == len(want)
    assert [sliced(wql) for wql in enumerate_wqls(server)] == [True] * 4 + [False]
    assert len(refusals(caplog)) == 2


def test_another_fault_on_the_slices_while_the_plain_query_works_still_gives_the_data(
    server: WSManServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    server.refuse_like = {PACKAGE_STATUS: "provider_failure"}
    source = WinRMSource(target(server, parallel=4))
    want = expected(abc_rows(SMALL))
    rows = poll(source)
    assert len(rows) == len(want)
    assert_same_rows(by_key(rows), want)
    (record,) = refusals(caplog)
    assert record.__dict__["err"].endswith("(code 0x80041001)")
    server.clear_requests()
    assert len(poll(source)) == len(want)
    assert enumerate_wqls(server) == [QUERY.wql]


@pytest.mark.parametrize(
    ("kind", "reason", "code"),
    [
        ("access_denied", "auth", 0x80041003),
        ("access_denied_wsman", "auth", 5),
        ("quota", "wmi_fault", 0x803381A6),
        ("encoding_limit", "wmi_fault", 0x80338111),
        ("timed_out", "timeout", 0x80338029),
    ],
)
def test_a_fault_on_the_slices_not_about_the_filter_fails_the_poll_without_trying_one_enumeration(
    server: WSManServer, caplog: pytest.LogCaptureFixture, kind: str, reason: str, code: int
) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    server.refuse_like = {PACKAGE_STATUS: kind}
    error = poll_error(WinRMSource(target(server, parallel=4)))
    assert (error.reason, error.wmi_code) == (reason, code)
    assert all(sliced(wql) for wql in enumerate_wqls(server))
    assert not refusals(caplog)
    assert server.open_contexts() == 0


def test_a_fault_on_the_unsliced_query_too_is_reported_as_its_own_and_the_slices_are_tried_again(
    server: WSManServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    server.class_faults = {PACKAGE_STATUS: "provider_failure"}  # every query, sliced or not
    source = WinRMSource(target(server, parallel=4))
    error = poll_error(source)
    assert (error.reason, error.wmi_code) == ("wmi_fault", 0x80041001)
    assert "WMI provider failure reading SMS_PackageStatus" in str(error)
    assert [sliced(wql) for wql in enumerate_wqls(server)] == [True] * 4 + [False]
    assert not refusals(caplog)  # nothing learnt: the one enumeration failed as well
    server.class_faults = {}
    server.clear_requests()
    assert len(poll(source)) == len(abc_rows(SMALL))
    assert [sliced(wql) for wql in enumerate_wqls(server)] == [True] * 4


def test_refused_slices_then_a_failing_unsliced_query_reports_the_unsliced_ones_fault(server: WSManServer) -> None:
    # The four slices' Enumerates come first (the one enumeration waits for them to end).
    server.fault_next("enumerate", "cannot_process_filter", class_name=PACKAGE_STATUS, times=4)
    server.fault_next("enumerate", "access_denied", class_name=PACKAGE_STATUS)
    error = poll_error(WinRMSource(target(server, parallel=4)))
    assert (error.reason, error.wmi_code) == ("auth", 0x80041003)  # the unsliced query's, as with one lane
    enumerates = server.requests_of(PACKAGE_STATUS, "enumerate")
    assert [(r.fault, sliced(r.wql)) for r in enumerates] == [("cannot_process_filter", True)] * 4 + [
        ("access_denied", False)]


def test_a_missing_class_read_in_slices_is_still_invalid_class() -> None:
    data: dict[str, dict[str, list[dict[str, Any]]]] = {site_namespace("ABC"): {"SMS_Package": []}}
    with WSManServer(data, users=USERS) as srv:
        error = poll_error(WinRMSource(target(srv, parallel=4)))
    assert (error.reason, error.wmi_code) == ("wmi_fault", 0x80041010)
    assert "invalid class SMS_PackageStatus in root\\SMS\\site_ABC" in str(error)


def test_the_optional_collectors_slices_fall_back_too(server: WSManServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    data = single_site_dataset("ABC", packages=30, servers=5, seed=7)
    server.set_dataset(data)
    server.refuse_like = {DP_CONTENT_SUMMARIZER: "invalid_query"}
    source = WinRMSource(target(server, parallel=4))
    rows = list(collector_rows(source, "dp_content_state", time.monotonic() + 30))
    want = data[site_namespace("ABC")][DP_CONTENT_SUMMARIZER]
    assert len(rows) == len(want) > 0
    assert sorted((r.package_id, r.state) for r in rows) == sorted((r["PackageID"], r["State"]) for r in want)
    assert [record.__dict__["class"] for record in refusals(caplog)] == [DP_CONTENT_SUMMARIZER]
    # Per class: the core table still takes its slices on the same source.
    assert len(poll(source)) == len(abc_rows(SMALL))
    assert [sliced(wql) for wql in enumerate_wqls(server)] == [True] * 4
    server.clear_requests()
    assert len(list(collector_rows(source, "dp_content_state", time.monotonic() + 30))) == len(want)
    assert [sliced(wql) for wql in enumerate_wqls(server, DP_CONTENT_SUMMARIZER)] == [False]


def test_merge_gives_no_page_when_a_walk_fails_before_its_first_one() -> None:
    """The walks start together: a walk that fails before its first page (a refused Enumerate)
    fails the merge before any page of the others, however many they had ready."""
    released: list[int] = []

    def fast(stop: threading.Event) -> Generator[int, None, None]:
        try:
            yield from range(100)
        finally:
            released.append(1)

    def refused(stop: threading.Event) -> Generator[int, None, None]:
        time.sleep(0.3)
        raise PollError("wmi_fault", "refused")
        yield 0  # a generator

    def late() -> PollError:
        return PollError("timeout", "late")

    given: list[tuple[int, int]] = []
    walks: list[lanes.Walk[int]] = [fast, refused, fast]
    with pytest.raises(PollError, match="refused"):
        given.extend(lanes.merge(walks, time.monotonic() + 10, late, "test-gate"))
    assert given == [] and released == [1, 1]
    # Once every walk has its first page they stream as before.
    pages = list(lanes.merge([fast, fast], time.monotonic() + 10, late, "test-gate"))
    assert sorted(page for _, page in pages) == sorted([*range(100), *range(100)])
