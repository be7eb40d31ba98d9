"""The exporter-toolkit web configuration: validation by key path, real TLS and basic auth.

TLS is tested end to end: a small ThreadingHTTPServer wired exactly as exporter/webconfig.py
recommends (wrap in get_request, handshake in the connection's thread), on 127.0.0.1, reached
by `requests` and by `ssl` clients with throwaway certificates minted here.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
from conftest import require_tool
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exporter import webconfig
from exporter.webconfig import (
    WWW_AUTHENTICATE,
    WebConfig,
    WebConfigError,
    load_web_config,
    parse_web_config,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "web-config.yml"
PASSWORD = "s3cret-scrape-password"


# --- throwaway PKI ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class PKI:
    ca: Path
    server: Issued
    client: Issued  # SANs: DNS prometheus.example, URI spiffe://example/prometheus, IP 10.0.0.7
    other_client: Issued  # same CA, SAN DNS intruder.example
    rogue_client: Issued  # a CA nobody trusts
    other_key: Path  # matches no certificate here


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    encoding, fmt = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    path.write_bytes(key.private_bytes(encoding, fmt, serialization.NoEncryption()))
    return path


def _ca(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = _key()
    cert = (
        _builder(name, _name(name), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def _issue(
    directory: Path,
    name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path],
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
) -> Issued:
    ca_cert, ca_key, _ = ca
    key = _key()
    cert = (
        _builder(name, ca_cert.subject, key)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    path = directory / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(path, _write_key(directory / f"{name}.key", key))


def mint_pki(directory: Path) -> PKI:
    ca = _ca(directory, "test-ca")
    rogue = _ca(directory, "rogue-ca")
    client_auth, server_auth = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH
    localhost = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    client_sans: list[x509.GeneralName] = [
        x509.DNSName("prometheus.example"),
        x509.UniformResourceIdentifier("spiffe://example/prometheus"),
        x509.IPAddress(ipaddress.ip_address("2001:db8::7")),
    ]
    return PKI(
        ca=ca[2],
        server=_issue(directory, "server", ca, localhost, server_auth),
        client=_issue(directory, "client", ca, client_sans, client_auth),
        other_client=_issue(directory, "other-client", ca, [x509.DNSName("intruder.example")], client_auth),
        rogue_client=_issue(directory, "rogue-client", rogue, [x509.DNSName("prometheus.example")], client_auth),
        other_key=_write_key(directory / "other.key", _key()),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return mint_pki(tmp_path_factory.mktemp("pki"))


def tls_config(pki: PKI, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n{extra}"


MTLS = "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {ca}\n"


# --- a server wired as the module recommends ----------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, web: WebConfig) -> None:
        self.web = web
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        return self.web.wrap_accepted(sock), address  # no I/O: accept() is never held up

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                self.web.handshake(request, timeout=5)
            except OSError:
                return  # a failed handshake or a rejected SAN: drop the connection
        super().finish_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        web = self.server.web
        if not web.check_basic_auth(self.headers.get("Authorization")):
            self._send(HTTPStatus.UNAUTHORIZED, b"Unauthorized\n", {"WWW-Authenticate": WWW_AUTHENTICATE})
            return
        self._send(HTTPStatus.OK, b"ok\n", {})

    def _send(self, status: HTTPStatus, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**self.server.web.headers, **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serving(web: WebConfig) -> Iterator[int]:
    server = _Server(web)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def https_get(port: int, pki: PKI, **kwargs: Any) -> requests.Response:
    return requests.get(f"https://127.0.0.1:{port}/metrics", verify=str(pki.ca), timeout=5, **kwargs)


def tls_connect(port: int, pki: PKI, configure: Callable[[ssl.SSLContext], None]) -> ssl.SSLSocket:
    """A raw TLS client; `configure` narrows its context. The caller closes the socket."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    configure(context)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return context.wrap_socket(sock, server_hostname="127.0.0.1")
    except BaseException:
        sock.close()
        raise


def errors(text: str, base_dir: Path) -> list[str]:
    with pytest.raises(WebConfigError) as caught:
        parse_web_config(text, base_dir)
    return caught.value.errors


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def users_config(cost: int = 4, prefix: str = "$2b$") -> str:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(cost)).decode()
    return f"basic_auth_users:\n  prometheus: '{prefix}{hashed[4:]}'\n"


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "# nothing here yet\n", "tls_server_config:\nbasic_auth_users:\n"])
def test_empty_file_means_plain_http_without_auth(text: str, tmp_path: Path) -> None:
    web = parse_web_config(text, tmp_path)
    assert web.ssl_context is None and not web.auth_required and web.headers == {}
    assert web.check_basic_auth(None)


def test_unknown_top_level_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    assert errors("tls_config: {}\n", tmp_path) == [
        "tls_config: unknown key; allowed: tls_server_config, http_server_config, basic_auth_users; "
        "did you mean 'tls_server_config'?"
    ]


def test_unknown_tls_key_is_named(tmp_path: Path, pki: PKI) -> None:
    assert errors(tls_config(pki, "  verify: true\n"), tmp_path) == [
        "tls_server_config.verify: unknown key; allowed: cert_file, key_file, client_auth_type, client_ca_file, "
        "client_allowed_sans, min_version, max_version, cipher_suites, prefer_server_cipher_suites, "
        "curve_preferences"
    ]


def test_ca_file_from_the_main_config_points_to_client_ca_file(tmp_path: Path, pki: PKI) -> None:
    assert errors(tls_config(pki, "  ca_file: ca.crt\n"), tmp_path) == [
        "tls_server_config.ca_file: unknown key; the CA certificates for client certificates go in client_ca_file"
    ]


def test_yaml_error_does_not_echo_a_value(tmp_path: Path) -> None:
    (message,) = errors("basic_auth_users:\n  prometheus: !hunter2secret\n", tmp_path)
    assert message.startswith("line 2, column 15: YAML syntax error: ") and "hunter2" not in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert errors("- tls_server_config\n", tmp_path) == [
        "top level: must be a mapping of tls_server_config, http_server_config, basic_auth_users (got a list)"
    ]


def test_tls_server_config_must_be_a_mapping(tmp_path: Path) -> None:
    assert errors("tls_server_config: server.crt\n", tmp_path) == [
        "tls_server_config: must be a mapping (got 'server.crt')"
    ]


def test_yaml_syntax_error_has_a_position(tmp_path: Path) -> None:
    assert errors("tls_server_config:\n  cert_file: [a\n", tmp_path) == [
        "line 3, column 1: YAML syntax error: expected ',' or ']', but got '<stream end>'"
        " (while parsing a flow sequence)"
    ]


def test_bad_yaml_scalar_has_a_position(tmp_path: Path) -> None:
    assert errors("tls_server_config:\n  min_version: 2024-13-45\n", tmp_path) == [
        "line 2, column 16: YAML syntax error: this looks like a YAML timestamp but is not a valid one; quote it"
    ]


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    assert errors("basic_auth_users: {}\nbasic_auth_users: {}\n", tmp_path) == [
        "line 2, column 1: key 'basic_auth_users' is given twice; each key may appear once in a mapping"
    ]


def test_bad_client_auth_type_lists_the_choices(tmp_path: Path, pki: PKI) -> None:
    assert errors(tls_config(pki, "  client_auth_type: x\n"), tmp_path) == [
        "tls_server_config.client_auth_type: must be one of NoClientCert, RequestClientCert, RequireAnyClientCert, "
        "VerifyClientCertIfGiven, RequireAndVerifyClientCert (got 'x')"
    ]


def test_client_auth_type_suggests_the_right_case(tmp_path: Path, pki: PKI) -> None:
    extra = f"  client_auth_type: requireandverifyclientcert\n  client_ca_file: {pki.ca}\n"
    (message,) = errors(tls_config(pki, extra), tmp_path)
    assert message.endswith("(got 'requireandverifyclientcert'); did you mean 'RequireAndVerifyClientCert'?")


def test_require_any_client_cert_is_refused_with_the_alternative(tmp_path: Path, pki: PKI) -> None:
    assert errors(tls_config(pki, "  client_auth_type: RequireAnyClientCert\n"), tmp_path) == [
        "tls_server_config.client_auth_type: RequireAnyClientCert (accept any certificate unverified) is not "
        "possible with Python's ssl module, which verifies every client certificate it asks for; use "
        "RequireAndVerifyClientCert with client_ca_file"
    ]


def test_cert_file_is_required_with_key_file(tmp_path: Path, pki: PKI) -> None:
    assert errors(f"tls_server_config:\n  key_file: {pki.server.key}\n", tmp_path) == [
        "tls_server_config.cert_file: required when tls_server_config sets anything (else HTTP is served)"
    ]


def test_min_version_alone_does_not_silently_serve_http(tmp_path: Path) -> None:
    assert errors("tls_server_config:\n  min_version: TLS13\n", tmp_path) == [
        "tls_server_config.cert_file: required when tls_server_config sets anything (else HTTP is served)",
        "tls_server_config.key_file: required when tls_server_config sets anything (else HTTP is served)",
    ]


def test_missing_cert_file_names_the_resolved_path(tmp_path: Path, pki: PKI) -> None:
    text = f"tls_server_config:\n  cert_file: missing.crt\n  key_file: {pki.server.key}\n"
    assert errors(text, tmp_path) == [
        f"tls_server_config.cert_file: cannot read {tmp_path / 'missing.crt'}: No such file or directory"
    ]


def test_cert_file_that_is_not_a_certificate(tmp_path: Path, pki: PKI) -> None:
    text = f"tls_server_config:\n  cert_file: {pki.server.key}\n  key_file: {pki.server.key}\n"
    (message,) = errors(text, tmp_path)
    assert message.startswith(f"tls_server_config.cert_file: no PEM certificate in {pki.server.key}: ")


def test_key_file_that_is_not_a_key(tmp_path: Path, pki: PKI) -> None:
    text = f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.ca}\n"
    assert errors(text, tmp_path) == [
        "tls_server_config.key_file: cannot be used with cert_file: no PEM private key found (both must be PEM, "
        "the key unencrypted, and the key must belong to the certificate)"
    ]


def test_key_that_does_not_match_the_certificate(tmp_path: Path, pki: PKI) -> None:
    text = f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.other_key}\n"
    assert errors(text, tmp_path) == [
        "tls_server_config.key_file: cannot be used with cert_file: KEY_VALUES_MISMATCH (both must be PEM, "
        "the key unencrypted, and the key must belong to the certificate)"
    ]


def test_encrypted_key_is_an_error_not_a_terminal_prompt(tmp_path: Path, pki: PKI) -> None:
    key = serialization.load_pem_private_key(pki.server.key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    text = f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {encrypted}\n"
    (message,) = errors(text, tmp_path)
    assert message.startswith("tls_server_config.key_file: cannot be used with cert_file: the key is encrypted")


def test_client_ca_file_is_required_to_verify_clients(tmp_path: Path, pki: PKI) -> None:
    assert errors(tls_config(pki, "  client_auth_type: RequireAndVerifyClientCert\n"), tmp_path) == [
        "tls_server_config.client_ca_file: required when client_auth_type is RequireAndVerifyClientCert "
        "(the CAs client certificates must chain to)"
    ]


def test_client_ca_file_without_client_auth_type_is_refused(tmp_path: Path, pki: PKI) -> None:
    assert errors(tls_config(pki, f"  client_ca_file: {pki.ca}\n"), tmp_path) == [
        "tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert, so no client certificate "
        "would be asked for; set client_auth_type: RequireAndVerifyClientCert"
    ]


def test_client_ca_file_without_certificates(tmp_path: Path, pki: PKI) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    (message,) = errors(tls_config(pki, MTLS.format(ca=garbage)), tmp_path)
    assert message.startswith(f"tls_server_config.client_ca_file: no PEM certificate in {garbage}: ")


def test_bad_min_version_suggests_the_spelling(tmp_path: Path, pki: PKI) -> None:
    assert errors(tls_config(pki, "  min_version: TLS1.3\n"), tmp_path) == [
        "tls_server_config.min_version: must be one of TLS10, TLS11, TLS12, TLS13 (got 'TLS1.3'); did you mean 'TLS13'?"
    ]


def test_max_version_below_min_version(tmp_path: Path, pki: PKI) -> None:
    assert errors(tls_config(pki, "  min_version: TLS13\n  max_version: TLS12\n"), tmp_path) == [
        "tls_server_config.max_version: TLS12 is below min_version TLS13"
    ]


def test_unknown_cipher_suite_is_named_by_index(tmp_path: Path, pki: PKI) -> None:
    text = tls_config(pki, "  cipher_suites:\n    - TLS_AES_128_GCM_SHA256\n    - ECDHE-RSA-AES128-GCM-SHA256\n")
    (message,) = errors(text, tmp_path)
    assert message.startswith("tls_server_config.cipher_suites[1]: must be one of TLS_RSA_WITH_AES_128_CBC_SHA, ")
    assert message.endswith(
        "(got 'ECDHE-RSA-AES128-GCM-SHA256'); did you mean 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'?"
    )


def test_insecure_cipher_suite_is_refused_as_go_does(tmp_path: Path, pki: PKI) -> None:
    (message,) = errors(tls_config(pki, "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"), tmp_path)
    assert message.startswith("tls_server_config.cipher_suites[0]: must be one of ")


def test_unknown_curve(tmp_path: Path, pki: PKI) -> None:
    assert errors(tls_config(pki, "  curve_preferences: [P256]\n"), tmp_path) == [
        "tls_server_config.curve_preferences[0]: must be one of CurveP256, CurveP384, CurveP521, X25519 "
        "(got 'P256'); did you mean 'CurveP256'?"
    ]


def test_client_allowed_sans_need_a_required_certificate(tmp_path: Path, pki: PKI) -> None:
    extra = f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {pki.ca}\n  client_allowed_sans: [a]\n"
    assert errors(tls_config(pki, extra), tmp_path) == [
        "tls_server_config.client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert (with "
        "VerifyClientCertIfGiven a client could connect without a certificate to match)"
    ]


def test_empty_client_allowed_sans_would_lock_everyone_out(tmp_path: Path, pki: PKI) -> None:
    assert errors(tls_config(pki, MTLS.format(ca=pki.ca) + "  client_allowed_sans: []\n"), tmp_path) == [
        "tls_server_config.client_allowed_sans: an empty list would turn every client away; list the SANs to "
        "allow, or remove the key"
    ]


def test_inline_pem_keys_are_refused_by_name(tmp_path: Path, pki: PKI) -> None:
    assert errors(tls_config(pki, "  key: |\n    -----BEGIN PRIVATE KEY-----\n"), tmp_path) == [
        "tls_server_config.key: is an exporter-toolkit key this exporter does not support (inline PEM); put the "
        "key in a file and name it in key_file"
    ]


def test_rate_limit_is_refused_by_name(tmp_path: Path) -> None:
    assert errors("rate_limit: {interval: 1s, burst: 10}\n", tmp_path) == [
        "rate_limit: is an exporter-toolkit key this exporter does not support; remove it (or limit in a reverse proxy)"
    ]


def test_forbidden_header(tmp_path: Path) -> None:
    assert errors("http_server_config:\n  headers:\n    Content-Type: text/html\n", tmp_path) == [
        "http_server_config.headers.Content-Type: this header cannot be set; allowed: Strict-Transport-Security, "
        "X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy"
    ]


def test_header_with_a_fixed_set_of_values(tmp_path: Path) -> None:
    assert errors("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", tmp_path) == [
        "http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin (got 'allow')"
    ]


def test_header_name_is_case_sensitive_as_in_exporter_toolkit(tmp_path: Path) -> None:
    (message,) = errors("http_server_config:\n  headers:\n    x-frame-options: deny\n", tmp_path)
    assert message.endswith("; did you mean 'X-Frame-Options'?")


def test_header_value_cannot_inject_a_header(tmp_path: Path) -> None:
    text = 'http_server_config:\n  headers:\n    Content-Security-Policy: "a\\r\\nSet-Cookie: x"\n'
    assert errors(text, tmp_path) == [
        "http_server_config.headers.Content-Security-Policy: must be a one-line string (got 'a\\r\\nSet-Cookie: x')"
    ]


def test_http2_is_accepted_and_headers_kept(tmp_path: Path) -> None:
    web = parse_web_config(
        "http_server_config:\n  http2: false\n  headers:\n    X-Content-Type-Options: nosniff\n"
        "    Content-Security-Policy: ''\n",
        tmp_path,
    )
    assert dict(web.headers) == {"X-Content-Type-Options": "nosniff"}  # blank: not sent


def test_http2_must_be_boolean(tmp_path: Path) -> None:
    assert errors("http_server_config:\n  http2: yes please\n", tmp_path) == [
        "http_server_config.http2: must be true or false (got 'yes please')"
    ]


def test_plain_password_instead_of_hash_is_refused_without_showing_it(tmp_path: Path) -> None:
    (message,) = errors(f"basic_auth_users:\n  prometheus: {PASSWORD}\n", tmp_path)
    assert message.startswith("basic_auth_users.prometheus: must be a bcrypt hash ($2a$, $2b$ or $2y$")
    assert PASSWORD not in message


def test_unknown_bcrypt_variant_is_refused(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode().replace("$2b$", "$2x$")
    (message,) = errors(f"basic_auth_users:\n  prometheus: '{hashed}'\n", tmp_path)
    assert message.startswith("basic_auth_users.prometheus: must be a bcrypt hash") and hashed not in message


def test_user_name_with_colon_cannot_log_in_and_is_refused(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode()
    assert errors(f"basic_auth_users:\n  'a:b': '{hashed}'\n", tmp_path) == [
        "basic_auth_users.'a:b': a user name must be a non-empty string without ':'"
    ]


def test_every_mistake_is_reported_at_once(tmp_path: Path, pki: PKI) -> None:
    text = tls_config(pki, "  min_version: TLS9\n") + "basic_auth_users:\n  a: nohash\nextra: 1\n"
    assert [message.split(":")[0] for message in errors(text, tmp_path)] == [
        "extra",
        "tls_server_config.min_version",
        "basic_auth_users.a",
    ]


def test_relative_paths_are_taken_from_the_web_config_folder(tmp_path: Path, pki: PKI, monkeypatch: Any) -> None:
    folder = tmp_path / "conf"
    (folder / "tls").mkdir(parents=True)
    shutil.copy(pki.server.cert, folder / "tls" / "server.crt")
    shutil.copy(pki.server.key, folder / "tls" / "server.key")
    path = folder / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n")
    monkeypatch.chdir(tmp_path)  # not the config's folder
    assert load_web_config(path).tls_enabled


def test_unreadable_web_config_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError) as caught:
        load_web_config(tmp_path / "nope.yml")
    assert caught.value.errors == [
        f"{tmp_path / 'nope.yml'}: cannot read the web configuration file: No such file or directory"
    ]


# --- TLS, end to end ----------------------------------------------------------------------------


def test_https_with_a_ca_file(tmp_path: Path, pki: PKI) -> None:
    web = parse_web_config(tls_config(pki), tmp_path)
    with serving(web) as port:
        response = https_get(port, pki)
    assert response.status_code == 200 and response.text == "ok\n"


def test_plain_http_client_gets_no_answer_from_the_tls_port(tmp_path: Path, pki: PKI) -> None:
    with serving(parse_web_config(tls_config(pki), tmp_path)) as port, pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_stalled_tls_client_does_not_block_others(tmp_path: Path, pki: PKI) -> None:
    web = parse_web_config(tls_config(pki), tmp_path)
    # The first client connects and never sends a ClientHello.
    with serving(web) as port, socket.create_connection(("127.0.0.1", port)):
        time.sleep(0.2)
        started = time.monotonic()
        assert https_get(port, pki).status_code == 200
        assert time.monotonic() - started < 2


def test_mtls_accepts_a_client_certificate_from_the_ca(tmp_path: Path, pki: PKI) -> None:
    web = parse_web_config(tls_config(pki, MTLS.format(ca=pki.ca)), tmp_path)
    with serving(web) as port:
        assert https_get(port, pki, cert=(str(pki.client.cert), str(pki.client.key))).status_code == 200


@pytest.mark.parametrize("client", ["none", "rogue"])
def test_mtls_turns_away_missing_and_foreign_certificates(tmp_path: Path, pki: PKI, client: str) -> None:
    web = parse_web_config(tls_config(pki, MTLS.format(ca=pki.ca)), tmp_path)
    cert = None if client == "none" else (str(pki.rogue_client.cert), str(pki.rogue_client.key))
    with serving(web) as port, pytest.raises(requests.exceptions.ConnectionError):
        https_get(port, pki, cert=cert)


def test_verify_client_cert_if_given(tmp_path: Path, pki: PKI) -> None:
    extra = f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {pki.ca}\n"
    with serving(parse_web_config(tls_config(pki, extra), tmp_path)) as port:
        assert https_get(port, pki).status_code == 200
        assert https_get(port, pki, cert=(str(pki.client.cert), str(pki.client.key))).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            https_get(port, pki, cert=(str(pki.rogue_client.cert), str(pki.rogue_client.key)))


def test_request_client_cert_admits_everyone_as_go_does(tmp_path: Path, pki: PKI) -> None:
    with serving(parse_web_config(tls_config(pki, "  client_auth_type: RequestClientCert\n"), tmp_path)) as port:
        assert https_get(port, pki).status_code == 200


@pytest.mark.parametrize("allowed", ["prometheus.example", "spiffe://example/prometheus", "2001:db8::7"])
def test_client_allowed_sans_admit_a_listed_san(tmp_path: Path, pki: PKI, allowed: str) -> None:
    extra = MTLS.format(ca=pki.ca) + f"  client_allowed_sans: ['other.example', '{allowed}']\n"
    with serving(parse_web_config(tls_config(pki, extra), tmp_path)) as port:
        assert https_get(port, pki, cert=(str(pki.client.cert), str(pki.client.key))).status_code == 200


def test_client_allowed_sans_turn_away_other_sans(tmp_path: Path, pki: PKI) -> None:
    extra = MTLS.format(ca=pki.ca) + "  client_allowed_sans: [prometheus.example]\n"
    with serving(parse_web_config(tls_config(pki, extra), tmp_path)) as port:
        with pytest.raises(requests.exceptions.ConnectionError):
            https_get(port, pki, cert=(str(pki.other_client.cert), str(pki.other_client.key)))
        assert https_get(port, pki, cert=(str(pki.client.cert), str(pki.client.key))).status_code == 200


def test_check_client_sans_compares_ip_addresses_as_addresses(tmp_path: Path) -> None:
    web = WebConfig(client_allowed_sans=("2001:db8::7", "10.0.0.1"))
    assert web.check_client_sans({"subjectAltName": (("IP Address", "2001:DB8:0:0:0:0:0:7\n"),)})
    assert web.check_client_sans({"subjectAltName": (("IP Address", "10.0.0.1"),)})
    assert not web.check_client_sans({"subjectAltName": (("DNS", "10.0.0.1.example"),)})
    assert not web.check_client_sans({})
    assert not web.check_client_sans(None)
    assert WebConfig().check_client_sans(None)  # nothing configured: nothing to check


def test_min_version_tls13_turns_away_a_tls12_only_client(tmp_path: Path, pki: PKI) -> None:
    web = parse_web_config(tls_config(pki, "  min_version: TLS13\n"), tmp_path)

    def tls12_only(context: ssl.SSLContext) -> None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2

    with serving(web) as port:
        with pytest.raises(ssl.SSLError):
            tls_connect(port, pki, tls12_only).close()
        with tls_connect(port, pki, lambda context: None) as conn:
            assert conn.version() == "TLSv1.3"


def test_cipher_suites_restrict_tls12(tmp_path: Path, pki: PKI) -> None:
    extra = "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256]\n"
    web = parse_web_config(tls_config(pki, extra), tmp_path)
    with serving(web) as port:
        with tls_connect(port, pki, lambda context: None) as conn:
            cipher = conn.cipher()
            assert cipher is not None and cipher[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
        with pytest.raises(ssl.SSLError):
            tls_connect(port, pki, lambda context: context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")).close()


def test_single_curve_preference_is_applied(tmp_path: Path, pki: PKI) -> None:
    # The server's key is P-256, so the certificate still works; ECDHE is limited to P-384.
    web = parse_web_config(tls_config(pki, "  max_version: TLS12\n  curve_preferences: [CurveP384]\n"), tmp_path)
    with serving(web) as port:
        with tls_connect(port, pki, lambda context: None) as conn:
            assert conn.version() == "TLSv1.2"
        with pytest.raises(ssl.SSLError):
            tls_connect(port, pki, lambda context: context.set_ecdh_curve("prime256v1")).close()


def test_headers_are_sent(tmp_path: Path, pki: PKI) -> None:
    text = tls_config(pki) + "http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=60\n"
    with serving(parse_web_config(text, tmp_path)) as port:
        assert https_get(port, pki).headers["Strict-Transport-Security"] == "max-age=60"


# --- basic auth ---------------------------------------------------------------------------------


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every bcrypt check made, by the hash it was checked against."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)  # the module exporter.webconfig calls
    return calls


def test_basic_auth_end_to_end(tmp_path: Path, pki: PKI) -> None:
    web = parse_web_config(tls_config(pki) + users_config(), tmp_path)
    with serving(web) as port:
        assert https_get(port, pki, auth=("prometheus", PASSWORD)).status_code == 200
        for auth in (None, ("prometheus", "wrong"), ("nobody", PASSWORD)):
            response = https_get(port, pki, auth=auth)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == 'Basic realm="sccm-package-exporter", charset="UTF-8"'
            assert response.text == "Unauthorized\n"


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_right_password_passes_for_every_bcrypt_variant(tmp_path: Path, prefix: str) -> None:
    web = parse_web_config(users_config(prefix=prefix), tmp_path)
    assert web.check_basic_auth(basic("prometheus", PASSWORD))
    assert web.check_basic_auth("basic " + basic("prometheus", PASSWORD)[6:])  # the scheme is case-insensitive


def test_wrong_password_fails_and_is_not_cached(tmp_path: Path, bcrypt_calls: list[bytes]) -> None:
    web = parse_web_config(users_config(), tmp_path)
    assert not web.check_basic_auth(basic("prometheus", "wrong"))
    assert not web.check_basic_auth(basic("prometheus", "wrong"))
    assert len(bcrypt_calls) == 2


def test_unknown_user_costs_a_bcrypt_check_too(tmp_path: Path, bcrypt_calls: list[bytes]) -> None:
    web = parse_web_config(users_config(), tmp_path)
    assert not web.check_basic_auth(basic("nobody", PASSWORD))
    assert bcrypt_calls == [web.basic_auth_users["prometheus"]]  # same cost as a real user's check


def test_unknown_user_with_a_real_users_password_fails(tmp_path: Path) -> None:
    web = parse_web_config(users_config(), tmp_path)
    assert not web.check_basic_auth(basic("nobody", PASSWORD))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
    ],
)
def test_malformed_authorization_is_refused(tmp_path: Path, header: str | None, bcrypt_calls: list[bytes]) -> None:
    web = parse_web_config(users_config(), tmp_path)
    assert not web.check_basic_auth(header)
    assert bcrypt_calls == []  # nothing to learn about user names here, so no bcrypt needed


def test_password_over_72_bytes_is_refused(tmp_path: Path) -> None:
    web = parse_web_config(users_config(), tmp_path)
    assert not web.check_basic_auth(basic("prometheus", PASSWORD + "x" * 80))


def test_success_is_cached_so_the_second_check_is_fast(tmp_path: Path, bcrypt_calls: list[bytes]) -> None:
    web = parse_web_config(users_config(cost=10), tmp_path)  # the cost htpasswd -B uses
    header = basic("prometheus", PASSWORD)
    started = time.perf_counter()
    assert web.check_basic_auth(header)
    first = time.perf_counter() - started
    started = time.perf_counter()
    assert web.check_basic_auth(header)
    second = time.perf_counter() - started
    assert len(bcrypt_calls) == 1
    assert second < first / 10, (first, second)


def test_cache_is_bounded_and_keeps_the_recent_entries() -> None:
    cache = webconfig._AuthCache(size=2)
    digests = [cache.digest("u", b"h", str(n).encode()) for n in range(3)]
    for digest in digests[:2]:
        cache.add(digest)
    assert digests[0] in cache  # touched: now the most recent
    cache.add(digests[2])
    assert len(cache) == 2
    assert digests[0] in cache and digests[2] in cache and digests[1] not in cache


def test_password_appears_in_no_repr_or_cache(tmp_path: Path) -> None:
    web = parse_web_config(users_config(), tmp_path)
    assert web.check_basic_auth(basic("prometheus", PASSWORD))
    hashed = web.basic_auth_users["prometheus"].decode()
    for text in (repr(web), str(web), repr(web._auth_cache), repr(vars(web._auth_cache))):
        assert PASSWORD not in text and hashed not in text
    assert all(PASSWORD.encode() not in digest for digest in web._auth_cache._entries)


def test_no_users_means_no_auth(tmp_path: Path) -> None:
    assert parse_web_config("basic_auth_users: {}\n", tmp_path).check_basic_auth(None)


# --- the example file and promtool --------------------------------------------------------------


def uncomment_mtls(text: str) -> str:
    return re.sub(r"^  # (client_(?:auth_type|ca_file): .*)$", r"  \1", text, flags=re.MULTILINE)


def example_copy(tmp_path: Path, pki: PKI, mtls: bool) -> Path:
    """The shipped example in a folder holding throwaway files under the names it references."""
    (tmp_path / "tls").mkdir()
    shutil.copy(pki.server.cert, tmp_path / "tls" / "exporter.crt")
    shutil.copy(pki.server.key, tmp_path / "tls" / "exporter.key")
    shutil.copy(pki.ca, tmp_path / "tls" / "prometheus-ca.crt")
    text = EXAMPLE.read_text()
    path = tmp_path / "web-config.yml"
    path.write_text(uncomment_mtls(text) if mtls else text)
    return path


@pytest.mark.parametrize("mtls", [False, True], ids=["as-shipped", "mtls-uncommented"])
def test_example_is_accepted_by_us(tmp_path: Path, pki: PKI, mtls: bool) -> None:
    web = load_web_config(example_copy(tmp_path, pki, mtls))
    assert web.tls_enabled and web.auth_required
    assert (web.ssl_context is not None and web.ssl_context.verify_mode) == (ssl.CERT_REQUIRED if mtls else 0)
    assert not web.check_basic_auth(basic("prometheus", "guess"))  # the example's password is unknown


def test_uncommenting_mtls_changes_the_example() -> None:
    assert uncomment_mtls(EXAMPLE.read_text()).count("\n  client_") == 2


def promtool_check_web_config(path: Path) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool")
    return subprocess.run(
        [promtool, "check", "web-config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("mtls", [False, True], ids=["as-shipped", "mtls-uncommented"])
def test_promtool_accepts_the_example(tmp_path: Path, pki: PKI, mtls: bool) -> None:
    result = promtool_check_web_config(example_copy(tmp_path, pki, mtls))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_and_we_accept_every_supported_key(tmp_path: Path, pki: PKI) -> None:
    extra = (
        # Not client_allowed_sans: Debian's promtool 2.42 predates it (tested above with our parser).
        MTLS.format(ca=pki.ca) + "  min_version: TLS12\n"
        "  max_version: TLS13\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"
        "  prefer_server_cipher_suites: false\n  curve_preferences: [X25519, CurveP256]\n"
    )
    text = tls_config(pki, extra) + (
        "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n" + users_config(prefix="$2y$")
    )
    path = tmp_path / "web.yml"
    path.write_text(text)
    assert load_web_config(path).tls_enabled
    result = promtool_check_web_config(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "text",
    [
        "http_server_config:\n  headers:\n    Content-Type: text/html\n",
        "basic_auth_users:\n  prometheus: not-a-hash\n",
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Nope\n",
        "tls_config: {}\n",
    ],
    ids=["header", "hash", "client-auth", "unknown-key"],
)
def test_promtool_and_we_refuse_the_same_mistakes(tmp_path: Path, text: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(WebConfigError):
        load_web_config(path)
    assert promtool_check_web_config(path).returncode != 0
