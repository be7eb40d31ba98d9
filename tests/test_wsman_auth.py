"""The test server's authentication, driven by real pywinrm (and raw ``requests`` where pywinrm
cannot say what a test needs): NTLM channel binding at each CbtHardeningLevel, CredSSP, and TLS
client certificates mapped to accounts.

Why: the exporter's tests of these transports trust the server to refuse what Windows refuses;
each check here fails if the server let the wrong client in (a check that is not really made).
"""

from __future__ import annotations

import base64
import re
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
import requests
import spnego
import winrm.protocol
from datasets import single_site_dataset, site_namespace
from requests_credssp.exceptions import AuthenticationException, NTStatusException
from spnego.channel_bindings import GssChannelBindings
from test_wsman_server import enumerate_xml, items_of, send, walk
from winrm.exceptions import InvalidCredentialsError
from wsman_server import (
    CREDSSP_CHUNK,
    MUTUAL_AUTH,
    CertMapping,
    WSManServer,
    cert_thumbprint,
    certificate_names,
    issue_client_cert,
    make_ca,
    ntlm_channel_bindings,
)

USER, PASSWORD = "CORP\\svc-reader", "Rd-0nly-Pa55"
OTHER, OTHER_PASSWORD = "CORP\\someone-else", "An0ther-Pa55"
USERS = {USER: PASSWORD, OTHER: OTHER_PASSWORD}
DATA = single_site_dataset("ABC", packages=60, servers=6, seed=3)
ROWS = DATA[site_namespace("ABC")]["SMS_PackageStatus"]
URI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_ABC/SMS_PackageStatus"
UPN = "svc-reader@corp.example.com"


Scheme = Literal["ntlm", "credssp", "certificate"]


def protocol(server: WSManServer, transport: Scheme, **options: Any) -> winrm.protocol.Protocol:
    """pywinrm as a user builds it; CredSSP inside is NTLM (pywinrm 0.5.0's Protocol does not pass
    credssp_auth_mechanism on, and "auto" would try Kerberos against the machine's default realm)."""
    settings: dict[str, Any] = {"username": USER, "password": PASSWORD, "proxy": None, "ca_trust_path": None}
    if server.tls:
        settings.update(server_cert_validation="validate", ca_trust_path=server.ca_file)
    settings.update(options)
    proto = winrm.protocol.Protocol(server.url, transport=transport, **settings)
    proto.transport.credssp_auth_mechanism = "ntlm"
    return proto


def settled(count: Callable[[], int], seconds: float = 2.0) -> int:
    """A server counter once the server's thread is done: the client may read an alert before the
    server, which sent it, has counted it."""
    deadline = time.monotonic() + seconds
    value = count()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if count() == value:
            return value
        value = count()
    return value


def all_rows(proto: winrm.protocol.Protocol) -> int:
    return len(items_of(walk(proto, URI)))


# --------------------------------------------------------------------------- NTLM channel binding


def ntlm_over_https(server: WSManServer, bindings: str) -> int:
    """One NTLM handshake over TLS by hand: pyspnego's client binding ``bindings`` ("right": the
    server certificate's tls-server-end-point, "wrong": another certificate's, "none"). The status
    of the request that carries the AUTHENTICATE message."""
    assert server.ca_file is not None
    with requests.Session() as session:
        session.verify = server.ca_file
        session.trust_env = False
        first = session.post(server.url, data=b"", timeout=10)
        assert first.status_code == 401 and "Negotiate" in first.raw.headers.getlist("WWW-Authenticate")
        der = ssl.PEM_cert_to_DER_cert(Path(server.ca_file).read_text()) if bindings == "right" else b"another"
        from cryptography.hazmat.primitives import hashes

        digest = hashes.Hash(hashes.SHA256())
        digest.update(der)
        cbt = GssChannelBindings(application_data=b"tls-server-end-point:" + digest.finalize())
        client = spnego.client(USER, PASSWORD, protocol="ntlm", channel_bindings=None if bindings == "none" else cbt)

        def post(token: bytes) -> requests.Response:
            auth = {"Authorization": "Negotiate " + base64.b64encode(token).decode()}
            return session.post(server.url, data=b"", headers=auth, timeout=10)

        challenge = post(client.step() or b"")
        assert challenge.status_code == 401
        token = challenge.headers["WWW-Authenticate"].split(" ", 1)[1]
        authenticate = client.step(base64.b64decode(token)) or b""
        assert (ntlm_channel_bindings(authenticate) is None) == (bindings == "none")
        return post(authenticate).status_code


@pytest.mark.parametrize(
    ("level", "bindings", "status"),
    [
        ("strict", "right", 200), ("strict", "none", 401), ("strict", "wrong", 401),
        ("relaxed", "right", 200), ("relaxed", "none", 200), ("relaxed", "wrong", 401),
        ("none", "right", 200), ("none", "none", 200), ("none", "wrong", 200),
    ],
)
def test_channel_binding_is_checked_at_each_hardening_level(level: str, bindings: str, status: int) -> None:
    with WSManServer(DATA, users=USERS, tls=True, auth=("ntlm",), cbt=level) as srv:
        assert ntlm_over_https(srv, bindings) == status
        assert srv.auth_failures == (status == 401)


def test_strict_binding_lets_pywinrm_in_and_refuses_it_without_send_cbt() -> None:
    with WSManServer(DATA, users=USERS, tls=True, auth=("ntlm",), cbt="strict") as srv:
        assert all_rows(protocol(srv, "ntlm")) == len(ROWS)  # send_cbt=True, pywinrm's default
        assert srv.ntlm_handshakes == 1 and srv.requests[-1].user == USER
        with pytest.raises(InvalidCredentialsError):
            send(protocol(srv, "ntlm", send_cbt=False), enumerate_xml(URI))
        assert srv.ntlm_handshakes == 1 and srv.auth_failures == 1


def test_relaxed_is_the_default_as_on_windows() -> None:
    with WSManServer(DATA, users=USERS, tls=True, auth=("ntlm",)) as srv:
        assert srv.cbt == "relaxed"
        assert send(protocol(srv, "ntlm", send_cbt=False), enumerate_xml(URI)).items
    with pytest.raises(ValueError, match="cbt must be one of"):
        WSManServer(DATA, tls=True, cbt="lax")


# --------------------------------------------------------------------------- CredSSP


@pytest.fixture
def credssp() -> Iterator[WSManServer]:
    with WSManServer(DATA, users=USERS, tls=True, auth=("credssp",)) as srv:
        yield srv


def test_credssp_over_https_serves_every_row_without_message_encryption(credssp: WSManServer) -> None:
    proto = protocol(credssp, "credssp")
    assert all_rows(proto) == len(ROWS)
    assert credssp.credssp_handshakes == 1  # one handshake: the connection stays authenticated
    assert {r.user for r in credssp.requests} == {USER}
    assert not any(r.encrypted for r in credssp.requests)  # TLS protects it (message_encryption auto)
    assert proto.transport.encryption is None


def test_credssp_legs_are_401s_with_a_token_then_the_request_is_served(
    credssp: WSManServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    statuses: list[tuple[int, str]] = []
    proto = protocol(credssp, "credssp")
    adapter = proto.transport.build_session().get_adapter(credssp.url)
    original = adapter.send

    def record(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = original(request, **kwargs)
        statuses.append((response.status_code, response.headers.get("WWW-Authenticate", "")))
        return response

    monkeypatch.setattr(adapter, "send", record)  # requests-credssp sends each leg through it
    send(proto, enumerate_xml(URI))
    # The offers, then the TLS handshake, NTLM and the public key check each as a 401 with a
    # CredSSP token; the credentials' request is the one served.
    assert statuses[0] == (401, "CredSSP")
    legs = statuses[1:-1]
    assert len(legs) >= 3 and all(s == 401 and re.fullmatch(r"CredSSP [A-Za-z0-9+/=]+", h) for s, h in legs)
    assert statuses[-1][0] == 200


def test_credssp_wrong_password_gets_windows_logon_failure(credssp: WSManServer) -> None:
    with pytest.raises(NTStatusException) as caught:
        send(protocol(credssp, "credssp", password="Wr0ng-Pa55"), enumerate_xml(URI))
    assert caught.value.status == 0xC000006D and "STATUS_LOGON_FAILURE" in str(caught.value)
    assert "Wr0ng-Pa55" not in str(caught.value)
    assert credssp.credssp_handshakes == 0 and credssp.auth_failures == 1 and credssp.requests == []


def credssp_by_hand(server: WSManServer, context: Any) -> requests.Response:
    """The CredSSP exchange as requests-credssp does it, with a context the test built."""
    assert server.ca_file is not None
    with requests.Session() as session:
        session.verify, session.trust_env = server.ca_file, False
        response = session.post(server.url, data=b"", timeout=10)
        token = context.step()
        while token:
            header = {"Authorization": "CredSSP " + base64.b64encode(token).decode()}
            response = session.post(server.url, data=b"", headers=header, timeout=10)
            offered = re.fullmatch(r"CredSSP (\S+)", response.headers.get("WWW-Authenticate", ""))
            if response.status_code != 401 or offered is None or context.complete:
                break
            token = context.step(base64.b64decode(offered.group(1)))
        return response


def test_credssp_delegating_someone_elses_password_is_refused(credssp: WSManServer) -> None:
    # NTLM inside with the user's password, then the other user's credentials delegated.
    inner = spnego.client(USER, PASSWORD, protocol="ntlm")
    liar = spnego.client(OTHER, OTHER_PASSWORD, protocol="credssp", credssp_negotiate_context=inner)
    response = credssp_by_hand(credssp, liar)
    assert response.status_code == 401 and response.raw.headers.getlist("WWW-Authenticate") == ["CredSSP"]
    assert credssp.credssp_handshakes == 0 and credssp.auth_failures == 1
    honest = spnego.client(USER, PASSWORD, protocol="credssp",
                           credssp_negotiate_context=spnego.client(USER, PASSWORD, protocol="ntlm"))
    assert credssp_by_hand(credssp, honest).status_code == 200
    assert credssp.credssp_handshakes == 1


def test_credssp_message_encryption_over_http_in_16k_parts() -> None:
    content_types: list[str] = []
    with WSManServer(DATA, users=USERS, auth=("credssp",), allow_unencrypted=False) as srv:
        proto = protocol(srv, "credssp")
        proto.transport.build_session().hooks["response"].append(
            lambda response, **kwargs: content_types.append(response.headers.get("Content-Type", "")))
        assert all_rows(proto) == len(ROWS)
        assert srv.requests and all(r.encrypted for r in srv.requests)
        assert max(r.bytes_out or 0 for r in srv.requests) > CREDSSP_CHUNK
        # Plain SOAP is refused with a bare 401 on the credentials' leg, as by Windows with
        # AllowUnencrypted false: requests-credssp then finds no token to read.
        with pytest.raises(AuthenticationException, match="after step Credential exchange"):
            send(protocol(srv, "credssp", message_encryption="never"), enumerate_xml(URI))
    sealed = [t for t in content_types if "HTTP-CredSSP-session-encrypted" in t]
    assert any(t.startswith("multipart/x-multi-encrypted;") for t in sealed)
    assert any(t.startswith("multipart/encrypted;") for t in sealed)


# --------------------------------------------------------------------------- client certificates


class PKI:
    """A CA the server trusts, another it does not, and client certificates of both."""

    def __init__(self, directory: Path) -> None:
        d = str(directory)
        self.ca = make_ca(d)
        self.other_ca = make_ca(d, "Some Other CA", stem="other-ca")
        self.thumbprint = cert_thumbprint(self.ca[0])
        self.client = issue_client_cert(d, self.ca, "svc-reader", upn=UPN)
        self.by_cn = issue_client_cert(d, self.ca, "svc-cn-only", stem="cn-only")
        self.unmapped = issue_client_cert(d, self.ca, "stranger", upn="stranger@corp.example.com")
        self.foreign = issue_client_cert(d, self.other_ca, "svc-reader", upn=UPN, stem="foreign")
        now = datetime.now(UTC)
        self.expired = issue_client_cert(d, self.ca, "svc-reader", upn=UPN, stem="expired",
                                         not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))

    def mappings(self) -> list[CertMapping]:
        return [CertMapping(UPN, self.thumbprint, USER), CertMapping("svc-cn-only", self.thumbprint, OTHER)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def cert_server(pki: PKI) -> Iterator[WSManServer]:
    with WSManServer(DATA, users=USERS, tls=True, auth=("certificate",), client_ca=pki.ca[0],
                     cert_mappings=pki.mappings()) as srv:
        yield srv


def with_cert(server: WSManServer, cert: tuple[str, str]) -> winrm.protocol.Protocol:
    return protocol(server, "certificate", username=None, password=None, cert_pem=cert[0], cert_key_pem=cert[1])


def test_minted_client_certificates_carry_what_windows_maps(pki: PKI) -> None:
    der = ssl.PEM_cert_to_DER_cert(Path(pki.client[0]).read_text())
    assert certificate_names(der) == [UPN, "svc-reader"]
    assert re.fullmatch(r"[0-9A-F]{40}", pki.thumbprint)
    assert Path(pki.client[1]).stat().st_mode & 0o077 == 0


def test_a_mapped_certificate_logs_on_as_its_user(cert_server: WSManServer, pki: PKI) -> None:
    proto = with_cert(cert_server, pki.client)
    assert proto.transport.build_session().headers["Authorization"] == MUTUAL_AUTH
    assert all_rows(proto) == len(ROWS)
    assert {r.user for r in cert_server.requests} == {USER}
    assert cert_server.certificate_logons == 1  # per connection
    with_cert_cn = with_cert(cert_server, pki.by_cn)
    assert send(with_cert_cn, enumerate_xml(URI)).items
    assert cert_server.requests[-1].user == OTHER  # no UPN: mapped by its subject CN


def test_an_unmapped_certificate_of_the_trusted_ca_gets_401(cert_server: WSManServer, pki: PKI) -> None:
    with pytest.raises(InvalidCredentialsError):
        send(with_cert(cert_server, pki.unmapped), enumerate_xml(URI))
    assert cert_server.auth_failures == 1 and cert_server.tls_failures == 0


def test_a_mapping_names_its_issuer(pki: PKI) -> None:
    mapping = CertMapping(UPN, cert_thumbprint(pki.other_ca[0]), USER)  # right subject, other CA
    with WSManServer(DATA, users=USERS, tls=True, auth=("certificate",), client_ca=pki.ca[0],
                     cert_mappings=[mapping]) as srv, pytest.raises(InvalidCredentialsError):
        send(with_cert(srv, pki.client), enumerate_xml(URI))


@pytest.mark.parametrize(
    ("which", "alert"),
    [("foreign", "tlsv1 alert unknown ca"), ("expired", "sslv3 alert certificate expired"),
     ("none", "tlsv13 alert certificate required")],
)
def test_the_tls_layer_refuses_other_cas_expired_and_missing_certificates(
    cert_server: WSManServer, pki: PKI, which: str, alert: str
) -> None:
    proto = protocol(cert_server, "ntlm") if which == "none" else with_cert(cert_server, getattr(pki, which))
    with pytest.raises(requests.exceptions.SSLError, match=alert):
        send(proto, enumerate_xml(URI))
    assert settled(lambda: cert_server.tls_failures) == 1 and cert_server.requests == []


def test_certificates_beside_other_schemes_are_asked_for_not_required(pki: PKI) -> None:
    with WSManServer(DATA, users=USERS, tls=True, auth=("ntlm", "certificate"), client_ca=pki.ca[0],
                     cert_mappings=pki.mappings()) as srv:
        offers = requests.post(srv.url, data=b"", verify=srv.ca_file, timeout=10).headers["WWW-Authenticate"]
        assert offers == f"Negotiate, {MUTUAL_AUTH}"
        assert send(protocol(srv, "ntlm"), enumerate_xml(URI)).items  # no certificate sent
        assert send(with_cert(srv, pki.client), enumerate_xml(URI)).items
        assert [r.user for r in srv.requests] == [USER, USER] and srv.certificate_logons == 1


def test_certificate_auth_needs_tls_and_a_client_ca() -> None:
    with pytest.raises(ValueError, match="client_ca"):
        WSManServer(DATA, tls=True, auth=("certificate",))
