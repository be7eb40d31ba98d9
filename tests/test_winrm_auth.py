"""WinRMSource over the three HTTPS ways of signing in -- NTLM with channel binding, CredSSP, a
client certificate -- against the loopback WS-Management server, and what each failure says.

Each failure must be reason `auth` with a message naming what is wrong (which certificate, which
date, which account), never the password or any key material.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_winrm_source import SMALL, abc_rows, assert_same_rows, by_key, expected, poll, poll_error
from test_wsman_auth import PKI, settled
from wsman_server import CertMapping, WSManServer, issue_client_cert

from exporter.config import AuthConfig, TargetConfig, TLSConfig
from exporter.errors import PollError
from exporter.winrm.clientcert import read_certificate
from exporter.winrm.source import WinRMSource
from exporter.winrm.transport import Transport

USER = "CORP\\svc-cm-exporter"
PASSWORD = "Cr3d-SSP-Pa55-N3ver-Shown"
USERS = {USER: PASSWORD}
UPN = "svc-reader@corp.example.com"


def target(server: WSManServer, transport: str, *, password: str | None = PASSWORD, user: str | None = USER,
           cert: tuple[str, str] | None = None, encryption: str = "auto", parallel: int = 2) -> TargetConfig:
    certificate = transport == "certificate"
    return TargetConfig(
        name="abc", source="winrm", interval=300, timeout=20, per_row="all", stale_after=900,
        host="127.0.0.1", port=server.port, scheme="https" if server.tls else "http", site_code="ABC",
        auth=AuthConfig(transport=transport, username=None if certificate else user,  # type: ignore[arg-type]
                        password=None if certificate else password,
                        message_encryption=encryption, allow_unencrypted=True),  # type: ignore[arg-type]
        tls=TLSConfig(verify=True, ca_file=server.ca_file, cert_file=cert[0] if cert else None,
                      key_file=cert[1] if cert else None),
        parallel_enumerations=parallel,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def mappings(pki: PKI) -> list[CertMapping]:
    return [CertMapping(UPN, pki.thumbprint, USER)]


@pytest.fixture
def cert_server(pki: PKI) -> Iterator[WSManServer]:
    with WSManServer(SMALL, users=USERS, tls=True, auth=("certificate",), client_ca=pki.ca[0],
                     cert_mappings=mappings(pki)) as srv:
        yield srv


@pytest.fixture
def credssp() -> Iterator[WSManServer]:
    with WSManServer(SMALL, users=USERS, tls=True, auth=("credssp",)) as srv:
        yield srv


# --- the three ways in --------------------------------------------------------------------------


def test_ntlm_with_strict_channel_binding_reads_every_row() -> None:
    with WSManServer(SMALL, users=USERS, tls=True, auth=("ntlm",), cbt="strict") as srv:
        rows = poll(WinRMSource(target(srv, "ntlm")))
        assert srv.ntlm_handshakes == 2 and srv.auth_failures == 0  # one per enumeration's connection
    assert_same_rows(by_key(rows), expected(abc_rows(SMALL)))


def test_credssp_over_https_reads_every_row_unencrypted(credssp: WSManServer) -> None:
    rows = poll(WinRMSource(target(credssp, "credssp")))
    assert_same_rows(by_key(rows), expected(abc_rows(SMALL)))
    assert credssp.credssp_handshakes == 2 and not any(r.encrypted for r in credssp.requests)


def test_credssp_over_http_seals_every_message() -> None:
    with WSManServer(SMALL, users=USERS, auth=("credssp",), allow_unencrypted=False) as srv:
        rows = poll(WinRMSource(target(srv, "credssp")))
        assert srv.requests and all(r.encrypted for r in srv.requests)
    assert_same_rows(by_key(rows), expected(abc_rows(SMALL)))


def test_a_client_certificate_reads_every_row(cert_server: WSManServer, pki: PKI) -> None:
    rows = poll(WinRMSource(target(cert_server, "certificate", cert=pki.client)))
    assert_same_rows(by_key(rows), expected(abc_rows(SMALL)))
    assert {r.user for r in cert_server.requests} == {USER} and cert_server.certificate_logons == 2


# --- CredSSP failures ---------------------------------------------------------------------------


def test_credssp_wrong_password_is_auth_and_says_logon_failure(credssp: WSManServer) -> None:
    error = poll_error(WinRMSource(target(credssp, "credssp", password="Wr0ng-Cr3d")))
    assert error.reason == "auth"
    assert str(error) == (
        f"127.0.0.1:{credssp.port} rejected the credentials of {USER} (CredSSP: STATUS_LOGON_FAILURE "
        "0xC000006D: wrong user name or password, Enumerate of SMS_PackageStatus)"
    )
    assert "Wr0ng-Cr3d" not in str(error) and PASSWORD not in str(error)


def test_a_provider_without_credssp_says_how_to_enable_it() -> None:
    with WSManServer(SMALL, users=USERS, tls=True, auth=("ntlm",)) as srv:
        error = poll_error(WinRMSource(target(srv, "credssp")))
    assert error.reason == "auth"
    assert "does not offer CredSSP" in str(error) and "Enable-WSManCredSSP -Role Server" in str(error)


def test_credssp_refused_at_the_credential_exchange_is_auth() -> None:
    # Over http without message encryption a Windows provider (AllowUnencrypted false) answers the
    # request that carries the delegated credentials with a bare 401.
    with WSManServer(SMALL, users=USERS, auth=("credssp",), allow_unencrypted=False) as srv:
        error = poll_error(WinRMSource(target(srv, "credssp", encryption="never")))
    assert error.reason == "auth"
    assert f"refused the credentials of {USER} delegated over CredSSP" in str(error)


def test_credssp_with_a_domain_backslash_name_goes_straight_to_ntlm(credssp: WSManServer) -> None:
    # pywinrm 0.5.0 would leave requests-credssp on "auto": Kerberos first, asking a KDC for a
    # name that is no principal. A user@realm name keeps "auto" (Kerberos, then NTLM).
    assert Transport(target(credssp, "credssp"))._new_protocol().transport.credssp_auth_mechanism == "ntlm"
    upn = Transport(target(credssp, "credssp", user="svc@CORP.EXAMPLE.COM"))._new_protocol()
    assert upn.transport.credssp_auth_mechanism == "auto"


# --- client certificate failures ----------------------------------------------------------------


def test_a_certificate_of_another_ca_is_auth_not_trusted(cert_server: WSManServer, pki: PKI) -> None:
    error = poll_error(WinRMSource(target(cert_server, "certificate", cert=pki.foreign, parallel=1)))
    assert error.reason == "auth"
    assert str(error) == (
        f"127.0.0.1:{cert_server.port} refused the client certificate CN=svc-reader ({pki.foreign[0]}): "
        "not issued by a CA the server trusts (TLS alert unknown ca)"
    )
    assert settled(lambda: cert_server.tls_failures) == 1  # not resent: a TLS alert is no dropped connection


def test_an_expired_certificate_is_refused_before_connecting_with_its_date(
    cert_server: WSManServer, pki: PKI
) -> None:
    error = poll_error(WinRMSource(target(cert_server, "certificate", cert=pki.expired)))
    assert error.reason == "auth"
    date = read_certificate(pki.expired[0]).not_after.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert str(error) == (f"client certificate {pki.expired[0]} (CN=svc-reader) expired on {date}: renew it "
                          f"(tls.cert_file, 127.0.0.1:{cert_server.port})")
    assert cert_server.connections_accepted == 0


def test_a_certificate_not_yet_valid_is_refused_before_connecting(
    cert_server: WSManServer, pki: PKI, tmp_path: Path
) -> None:
    soon = datetime.now(UTC) + timedelta(days=1)
    future = issue_client_cert(str(tmp_path), pki.ca, "svc-reader", upn=UPN, not_before=soon,
                               not_after=soon + timedelta(days=1))
    error = poll_error(WinRMSource(target(cert_server, "certificate", cert=future)))
    assert error.reason == "auth" and "is not valid before" in str(error) and "clock" in str(error)
    assert cert_server.connections_accepted == 0


def test_the_servers_expiry_alert_names_the_date_this_host_sees(
    cert_server: WSManServer, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A clock behind the provider's: this host thinks the certificate still valid.
    monkeypatch.setattr("exporter.winrm.clientcert.ClientCertificate.problem", lambda self, now=None: None)
    error = poll_error(WinRMSource(target(cert_server, "certificate", cert=pki.expired)))
    assert error.reason == "auth", str(error)
    assert "refused the client certificate CN=svc-reader" in str(error) and "as expired" in str(error)
    assert "TLS alert certificate expired" in str(error) and "valid until" in str(error)


def test_no_certificate_where_one_is_required_is_auth(cert_server: WSManServer) -> None:
    error = poll_error(WinRMSource(target(cert_server, "ntlm")))
    assert error.reason == "auth"
    assert str(error) == (
        f"127.0.0.1:{cert_server.port} requires a TLS client certificate and none was sent (TLS alert "
        "certificate required): use auth.transport certificate with tls.cert_file and tls.key_file"
    )


def test_under_tls_1_2_the_refusals_come_in_the_handshake_and_say_the_same(pki: PKI) -> None:
    # Windows Server 2019 and older speak TLS 1.2: the alert fails the handshake itself.
    with WSManServer(SMALL, users=USERS, tls=True, auth=("certificate",), client_ca=pki.ca[0],
                     cert_mappings=mappings(pki), tls_max="1.2") as srv:
        assert len(poll(WinRMSource(target(srv, "certificate", cert=pki.client)))) == len(abc_rows(SMALL))
        foreign = poll_error(WinRMSource(target(srv, "certificate", cert=pki.foreign)))
        none = poll_error(WinRMSource(target(srv, "ntlm")))
    assert foreign.reason == "auth" and "not issued by a CA the server trusts (TLS alert unknown ca)" in str(foreign)
    # TLS 1.2 has no "certificate required": the alert is ambiguous, the reason stays connection.
    assert none.reason == "connection"
    assert str(none) == (f"127.0.0.1:{srv.port} refused the TLS handshake (TLS alert handshake failure): no "
                         "protocol version or cipher in common, or it requires a client certificate "
                         "(auth.transport certificate)")


def test_an_unmapped_certificate_is_auth_and_says_to_map_it(cert_server: WSManServer, pki: PKI) -> None:
    error = poll_error(WinRMSource(target(cert_server, "certificate", cert=pki.unmapped)))
    assert error.reason == "auth"
    assert str(error).startswith(
        f"127.0.0.1:{cert_server.port} mapped the client certificate CN=stranger ({pki.unmapped[0]}) to no "
        "account (HTTP 401, Enumerate of SMS_PackageStatus): map it on the provider with New-Item "
        "WSMan:\\localhost\\ClientCertificate"
    )


def test_a_key_that_is_not_the_certificates_is_auth(cert_server: WSManServer, pki: PKI) -> None:
    error = poll_error(WinRMSource(target(cert_server, "certificate", cert=(pki.client[0], pki.unmapped[1]))))
    assert error.reason == "auth"
    assert str(error) == f"tls.key_file {pki.unmapped[1]} is not the key of tls.cert_file {pki.client[0]}"


def test_an_unreadable_certificate_file_is_auth(cert_server: WSManServer, pki: PKI, tmp_path: Path) -> None:
    garbage = tmp_path / "client.pem"
    garbage.write_text("not a certificate\n")
    error = poll_error(WinRMSource(target(cert_server, "certificate", cert=(str(garbage), pki.client[1]))))
    assert error.reason == "auth" and f"{garbage} holds no PEM certificate" in str(error)


def test_no_key_material_in_any_message(cert_server: WSManServer, pki: PKI) -> None:
    key_lines = [line for line in Path(pki.client[1]).read_text().splitlines() if "-----" not in line]
    for cert in (pki.foreign, pki.expired, pki.unmapped, (pki.client[0], pki.unmapped[1])):
        text = str(poll_error(WinRMSource(target(cert_server, "certificate", cert=cert))))
        assert not any(line in text for line in key_lines)
        assert "PRIVATE KEY" not in text


# --- the key file's permissions -----------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_key_readable_by_others_is_warned_about_once_per_target(
    pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "client-key.pem"
    key.write_bytes(Path(pki.client[1]).read_bytes())
    key.chmod(0o644)
    with WSManServer(SMALL, users=USERS, tls=True, auth=("certificate",), client_ca=pki.ca[0],
                     cert_mappings=mappings(pki)) as srv, caplog.at_level(logging.WARNING, "exporter.winrm"):
        source = WinRMSource(target(srv, "certificate", cert=(pki.client[0], str(key))))
        assert len(poll(source)) == len(abc_rows(SMALL))  # never fails for it
        assert len(poll(source)) == len(abc_rows(SMALL))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    record = warnings[0]
    assert record.__dict__["file"] == str(key) and record.__dict__["mode"] == "0644"
    assert record.__dict__["hint"] == f"chmod 600 {key}" and record.__dict__["target"] == "abc"
    assert "PRIVATE" not in record.getMessage()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_private_key_file_or_another_transport_is_not_warned_about(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    with WSManServer(SMALL, users=USERS, tls=True, auth=("certificate",), client_ca=pki.ca[0],
                     cert_mappings=mappings(pki)) as srv, caplog.at_level(logging.WARNING, "exporter.winrm"):
        WinRMSource(target(srv, "certificate", cert=pki.client))  # written 0600
        os.chmod(pki.client[1], 0o640)
        try:
            WinRMSource(replace(target(srv, "ntlm"), tls=TLSConfig(ca_file=srv.ca_file, key_file=pki.client[1])))
            WinRMSource(target(srv, "certificate", cert=(pki.client[0], pki.client[1] + ".missing")))
        finally:
            os.chmod(pki.client[1], 0o600)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("fault,reason", [("invalid_class", "wmi_fault"), ("access_denied", "auth"),
                                          ("provider_failure", "wmi_fault")])
def test_a_fault_answering_the_request_that_completes_credssp_is_that_fault(
    credssp: WSManServer, fault: str, reason: str
) -> None:
    # The first request of a connection carries the delegated credentials; the provider answers it
    # at once, here with a SOAP fault (HTTP 500), which is the answer to the request, not a refusal.
    credssp.class_faults = {"SMS_PackageStatus": fault}
    with pytest.raises(PollError) as caught:
        poll(WinRMSource(target(credssp, "credssp", parallel=1)))
    assert caught.value.reason == reason, str(caught.value)
    assert "CredSSP" not in str(caught.value)
