"""The Prometheus exporter-toolkit web configuration file (`--web.config.file`): TLS and basic auth.

The format is the one every Prometheus exporter reads (exporter-toolkit's docs/web-configuration.md),
so a file written for node_exporter works here. `load_web_config(path)` / `parse_web_config(text,
base_dir)` validate it up front and raise `WebConfigError` with every problem, each as
`<key path>: <what is wrong>`, like the main configuration. Relative file names are taken from the web
config file's folder, as exporter-toolkit does.

What Python's `ssl` module cannot do, and what we do instead:
- `client_auth_type: RequireAnyClientCert` (ask for a certificate, accept it unverified) cannot be
  expressed: OpenSSL, as Python drives it, verifies every client certificate it asks for. It is
  refused with a pointer to RequireAndVerifyClientCert rather than silently made stricter or looser.
- `RequestClientCert` asks for a certificate and then trusts anyone; it grants nothing, so it is
  served as NoClientCert (no certificate asked for), which admits exactly the same clients.
- `curve_preferences`: one curve is applied (OpenSSL then offers only it, as Go would); a list of
  several is checked and otherwise ignored, since Python can set only one group. OpenSSL's default
  groups (X25519, P-256, P-384, P-521, X448) are all strong.
- `cipher_suites`: the TLS 1.3 names are accepted and ignored, as Go ignores them too.
- `http_server_config.http2` is accepted and ignored: the stdlib server speaks HTTP/1.1.
- Inline PEM (`cert`, `key`, `client_ca`) and `rate_limit`, newer exporter-toolkit keys, are refused
  with a message saying so, rather than as unknown keys.
Unlike exporter-toolkit, the file is read once at start (and on reload), not on every request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
import re
import secrets
import socket
import ssl
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

import bcrypt

from exporter.validation import (
    Checker,
    Style,
    ValidationError,
    key_path,
    missing,
    parse_document,
    read_document,
    suggest,
)

ClientAuthType = Literal[
    "NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"
]
CLIENT_AUTH_TYPES: Final[tuple[ClientAuthType, ...]] = get_args(ClientAuthType)

TLS_VERSIONS: Final[Mapping[str, ssl.TLSVersion]] = MappingProxyType(
    {
        "TLS10": ssl.TLSVersion.TLSv1,
        "TLS11": ssl.TLSVersion.TLSv1_1,
        "TLS12": ssl.TLSVersion.TLSv1_2,
        "TLS13": ssl.TLSVersion.TLSv1_3,
    }
)

# Go's tls.CipherSuites() (the ones exporter-toolkit accepts) -> OpenSSL's name for set_ciphers().
# None: a TLS 1.3 suite, which neither Go nor Python lets a server choose; accepted and ignored.
CIPHER_SUITES: Final[Mapping[str, str | None]] = MappingProxyType(
    {
        "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
        "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
        "TLS_AES_128_GCM_SHA256": None,
        "TLS_AES_256_GCM_SHA384": None,
        "TLS_CHACHA20_POLY1305_SHA256": None,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    }
)

# exporter-toolkit's curve names -> OpenSSL's.
CURVES: Final[Mapping[str, str]] = MappingProxyType(
    {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
)

# exporter-toolkit allows exactly these response headers (an allow-list, so that nobody overrides
# Content-Type, Authorization or the like); a non-empty tuple lists the only values allowed.
HEADERS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "Strict-Transport-Security": (),
        "X-Content-Type-Options": ("nosniff",),
        "X-Frame-Options": ("deny", "sameorigin"),
        "X-XSS-Protection": (),
        "Content-Security-Policy": (),
    }
)

# What a 401 carries. The realm names the exporter; charset tells browsers the password is UTF-8.
WWW_AUTHENTICATE: Final = 'Basic realm="sccm-package-exporter", charset="UTF-8"'
# Per socket operation while the handshake runs in the connection's own thread.
HANDSHAKE_TIMEOUT: Final = 10.0
# Successful basic-auth checks remembered; each entry is 32 bytes.
AUTH_CACHE_SIZE: Final = 1024

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)
_HTTP_KEYS = ("http2", "headers")
_NOT_SUPPORTED = "is an exporter-toolkit key this exporter does not support"
_TOP_UNSUPPORTED = MappingProxyType({"rate_limit": f"{_NOT_SUPPORTED}; remove it (or limit in a reverse proxy)"})
_TLS_UNSUPPORTED = MappingProxyType(
    {
        "cert": f"{_NOT_SUPPORTED} (inline PEM); put the certificate in a file and name it in cert_file",
        "key": f"{_NOT_SUPPORTED} (inline PEM); put the key in a file and name it in key_file",
        "client_ca": f"{_NOT_SUPPORTED} (inline PEM); put the CA certificates in a file and name it in client_ca_file",
        # The main configuration's tls.ca_file is the usual slip here.
        "ca_file": "unknown key; the CA certificates for client certificates go in client_ca_file",
    }
)
# How this file's messages have always shown values and keys (exporter/validation.py's Style says
# how that differs from the main configuration's); kept so that no message changes.
_STYLE = Style(clip_quoted=False, kind_names=False, string_keys=False)
_VERIFYING: tuple[ClientAuthType, ...] = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
# `$2a$`, `$2b$` or `$2y$`, a two-digit cost from 04 to 31, then 22 characters of salt and 31 of hash.
_BCRYPT_RE = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


class WebConfigError(ValidationError):
    """The web configuration is wrong; `errors` holds every problem, each naming its key path."""


class ClientRejectedError(ConnectionError):
    """The client's certificate carries none of `client_allowed_sans`."""


class _AuthCache:
    """Basic-auth checks that succeeded, so that a scrape every 15 s costs one bcrypt, not one each.

    Entries are HMAC-SHA256 digests of user, stored hash and password under a random per-process
    key: neither the password nor a fast unsalted hash of it (which would be quick to brute-force
    from a memory dump) is kept. Only successes are stored, so a flood of wrong guesses cannot push
    the real users out, and the size is bounded all the same (least recently used goes first).
    """

    def __init__(self, size: int = AUTH_CACHE_SIZE) -> None:
        self._size = size
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        # One bcrypt at a time, as exporter-toolkit does: bad guesses in parallel cost one core, not all.
        self.bcrypt_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<_AuthCache {len(self)} entries>"

    def __len__(self) -> int:
        return len(self._entries)

    def digest(self, user: str, hashed: bytes, password: bytes) -> bytes:
        # ':' cannot occur in a basic-auth user name (it ends it) nor in a bcrypt hash: unambiguous.
        return hmac.digest(self._key, user.encode() + b":" + hashed + b":" + password, "sha256")

    def __contains__(self, digest: bytes) -> bool:
        with self._lock:
            if digest not in self._entries:
                return False
            self._entries.move_to_end(digest)
            return True

    def add(self, digest: bytes) -> None:
        with self._lock:
            self._entries[digest] = None
            self._entries.move_to_end(digest)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


@dataclass(frozen=True)
class WebConfig:
    """A validated web configuration; `WebConfig()` serves plain HTTP without authentication."""

    ssl_context: ssl.SSLContext | None = None
    # user -> bcrypt hash. Not a password, but not for logs either: out of repr.
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    client_allowed_sans: tuple[str, ...] = ()
    _auth_cache: _AuthCache = field(default_factory=_AuthCache, init=False, repr=False, compare=False)

    @property
    def tls_enabled(self) -> bool:
        return self.ssl_context is not None

    @property
    def auth_required(self) -> bool:
        return bool(self.basic_auth_users)

    def check_basic_auth(self, authorization_header: str | None) -> bool:
        """True when no users are configured, or the header holds a configured user and password.

        An unknown user costs the same bcrypt as a known one (checked against a configured hash,
        so at the same cost), so response times do not tell which user names exist.
        """
        if not self.basic_auth_users:
            return True
        credentials = _basic_credentials(authorization_header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self.basic_auth_users.get(user)
        if hashed is None:
            with self._auth_cache.bcrypt_lock:
                _bcrypt_matches(password, next(iter(self.basic_auth_users.values())))
            return False
        digest = self._auth_cache.digest(user, hashed, password)
        if digest in self._auth_cache:
            return True
        with self._auth_cache.bcrypt_lock:
            ok = _bcrypt_matches(password, hashed)
        if ok:
            self._auth_cache.add(digest)
        return ok

    def check_client_sans(self, peercert: Mapping[str, Any] | None) -> bool:
        """True when `client_allowed_sans` is empty or names a SAN of the client certificate.

        `peercert` is `SSLSocket.getpeercert()`: filled in only for a verified certificate, which
        is what client_allowed_sans requires. DNS, email and URI SANs match exactly; IP addresses
        match as addresses (OpenSSL writes `2001:DB8:0:0:0:0:0:1` where a user writes `2001:db8::1`).
        """
        if not self.client_allowed_sans:
            return True
        sans = peercert.get("subjectAltName", ()) if peercert else ()
        return any(_san_allowed(str(kind), str(value), self.client_allowed_sans) for kind, value in sans)

    def wrap_accepted(self, sock: socket.socket) -> socket.socket:
        """The accepted socket wrapped for TLS, without any I/O (the handshake comes in `handshake`)."""
        if self.ssl_context is None:
            return sock
        return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)

    def handshake(self, conn: ssl.SSLSocket, timeout: float = HANDSHAKE_TIMEOUT) -> None:
        """Complete the TLS handshake of a wrapped connection, then apply client_allowed_sans.

        Meant for the connection's own thread. Raises OSError (ssl.SSLError, TimeoutError,
        ClientRejectedError, a reset) when the connection must be dropped.
        """
        previous = conn.gettimeout()
        conn.settimeout(timeout)
        conn.do_handshake()
        conn.settimeout(previous)
        if not self.check_client_sans(conn.getpeercert()):
            raise ClientRejectedError("the client certificate has none of tls_server_config.client_allowed_sans")


def _basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    """(user, password) from `Basic base64(user:password)`; None for anything else."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
        user_bytes, sep, password = raw.partition(b":")
        user = user_bytes.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _bcrypt_matches(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # bcrypt 5 refuses a password over 72 bytes (4.x cut it short); a wrong password
        return False


def _san_allowed(kind: str, value: str, allowed: tuple[str, ...]) -> bool:
    if kind in ("DNS", "email", "URI"):
        return value in allowed
    if kind != "IP Address":
        return False
    address = _ip(value)
    return address is not None and any(_ip(entry) == address for entry in allowed)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


# --- loading ------------------------------------------------------------------------------------


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate the web configuration file; relative file names are taken from its folder."""
    text, base_dir = read_document(path, "web configuration file", WebConfigError)
    return parse_web_config(text, base_dir)


def parse_web_config(text: str, base_dir: str | os.PathLike[str]) -> WebConfig:
    """Validate web configuration text; an empty text means plain HTTP without authentication."""
    data = parse_document(text, WebConfigError)
    check = Checker(base_dir=os.path.abspath(base_dir), style=_STYLE)
    if data is None:
        return WebConfig()
    if not isinstance(data, dict):
        raise WebConfigError([f"top level: must be a mapping of {', '.join(_TOP_KEYS)} (got {check.show(data)})"])
    check.keys(data, "", _TOP_KEYS, refused=_TOP_UNSUPPORTED)
    context, sans = _tls(check, data.get("tls_server_config"))
    headers = _http(check, data.get("http_server_config"))
    users = _users(check, data.get("basic_auth_users"))
    if check.errors:
        raise WebConfigError(check.errors)
    return WebConfig(
        ssl_context=context,
        basic_auth_users=MappingProxyType(users),
        headers=MappingProxyType(headers),
        client_allowed_sans=sans,
    )


# --- tls_server_config --------------------------------------------------------------------------


@dataclass(frozen=True)
class _TLS:
    cert_file: str
    key_file: str
    client_auth: ClientAuthType
    client_ca_file: str | None
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    ciphers: tuple[str, ...]  # OpenSSL names for TLS <= 1.2
    prefer_server_ciphers: bool
    curves: tuple[str, ...]  # OpenSSL names
    allowed_sans: tuple[str, ...]


def _tls(check: Checker, value: Any) -> tuple[ssl.SSLContext | None, tuple[str, ...]]:
    section = check.section(value, "tls_server_config")
    if not section:
        return None, ()
    check.keys(section, "tls_server_config", _TLS_KEYS, refused=_TLS_UNSUPPORTED)
    if all(item is None for item in section.values()):
        return None, ()  # every key left empty: as if commented out, which is what exporter-toolkit does
    settings = _tls_settings(check, section)
    if settings is None:
        return None, ()
    return _tls_context(check, settings), settings.allowed_sans


def _tls_settings(check: Checker, section: dict[Any, Any]) -> _TLS | None:
    prefix = "tls_server_config"
    cert_file = check.string(section, "cert_file", prefix)
    key_file = check.string(section, "key_file", prefix)
    for key, found in (("cert_file", cert_file), ("key_file", key_file)):
        if found is None and missing(section, key):
            # exporter-toolkit would fall back to plain HTTP here; saying so beats a silent surprise.
            check.error(key_path(prefix, key), "required when tls_server_config sets anything (else HTTP is served)")
    client_auth = _client_auth(check, section)
    client_ca_file = _client_ca_file(check, section, client_auth)
    sans = _allowed_sans(check, section, client_auth)
    versions = _versions(check, section)
    ciphers = check.names(section, "cipher_suites", prefix, CIPHER_SUITES)
    curves = check.names(section, "curve_preferences", prefix, CURVES)
    prefer = check.boolean(section, "prefer_server_cipher_suites", prefix, default=True)
    if cert_file is None or key_file is None or client_auth is None or versions is None:
        return None
    # Joined, not check.resolve()d: messages name the files as joined, `./` and `..` included.
    return _TLS(
        cert_file=os.path.join(check.base_dir, cert_file),
        key_file=os.path.join(check.base_dir, key_file),
        client_auth=client_auth,
        client_ca_file=os.path.join(check.base_dir, client_ca_file) if client_ca_file else None,
        min_version=versions[0],
        max_version=versions[1],
        ciphers=tuple(name for name in (CIPHER_SUITES[c] for c in ciphers) if name is not None),
        prefer_server_ciphers=prefer,
        curves=tuple(CURVES[c] for c in curves),
        allowed_sans=sans,
    )


def _client_auth(check: Checker, section: dict[Any, Any]) -> ClientAuthType | None:
    found = check.choice(section, "client_auth_type", "tls_server_config", CLIENT_AUTH_TYPES)
    if found == "RequireAnyClientCert":
        check.error(
            "tls_server_config.client_auth_type",
            "RequireAnyClientCert (accept any certificate unverified) is not possible with Python's ssl module, "
            "which verifies every client certificate it asks for; use RequireAndVerifyClientCert with client_ca_file",
        )
        return None
    if found is None:  # not set (the default), or a mistake already reported
        return "NoClientCert" if missing(section, "client_auth_type") else None
    return found


def _client_ca_file(check: Checker, section: dict[Any, Any], client_auth: ClientAuthType | None) -> str | None:
    path = "tls_server_config.client_ca_file"
    found = check.string(section, "client_ca_file", "tls_server_config")
    if found is None and missing(section, "client_ca_file") and client_auth in _VERIFYING:
        check.error(
            path, f"required when client_auth_type is {client_auth} (the CAs client certificates must chain to)"
        )
    if found is not None and client_auth == "NoClientCert":
        check.error(
            path,
            "set, but client_auth_type is NoClientCert, so no client certificate would be asked for; "
            "set client_auth_type: RequireAndVerifyClientCert",
        )
    return found


def _allowed_sans(check: Checker, section: dict[Any, Any], client_auth: ClientAuthType | None) -> tuple[str, ...]:
    path = "tls_server_config.client_allowed_sans"
    if missing(section, "client_allowed_sans"):
        return ()
    sans = check.names(section, "client_allowed_sans", "tls_server_config", None)
    if section["client_allowed_sans"] == []:
        check.error(path, "an empty list would turn every client away; list the SANs to allow, or remove the key")
    elif client_auth is not None and client_auth != "RequireAndVerifyClientCert":
        check.error(
            path,
            f"needs client_auth_type RequireAndVerifyClientCert (with {client_auth} a client "
            "could connect without a certificate to match)",
        )
    return tuple(sans)


def _versions(check: Checker, section: dict[Any, Any]) -> tuple[ssl.TLSVersion, ssl.TLSVersion] | None:
    choices = tuple(TLS_VERSIONS)
    low = check.choice(section, "min_version", "tls_server_config", choices) or "TLS12"
    high = check.choice(section, "max_version", "tls_server_config", choices) or "TLS13"
    if TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        check.error("tls_server_config.max_version", f"{high} is below min_version {low}")
        return None
    return TLS_VERSIONS[low], TLS_VERSIONS[high]


def _tls_context(check: Checker, tls: _TLS) -> ssl.SSLContext | None:
    prefix = "tls_server_config"
    files = [(tls.cert_file, "cert_file"), (tls.key_file, "key_file")]
    if tls.client_ca_file:
        files.append((tls.client_ca_file, "client_ca_file"))
    if not all([check.readable(path, key_path(prefix, key)) for path, key in files]):  # list: report every file
        return None
    if not _has_certificate(check, tls.cert_file, key_path(prefix, "cert_file")):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_protocol(context, tls)
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_no_passphrase)
    except (ssl.SSLError, _PassphraseError) as exc:
        check.error(
            key_path(prefix, "key_file"),
            f"cannot be used with cert_file: {_ssl_reason(exc, 'no PEM private key found')} (both must be PEM, "
            "the key unencrypted, and the key must belong to the certificate)",
        )
        return None
    if tls.client_auth in _VERIFYING and tls.client_ca_file:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except ssl.SSLError as exc:
            where = key_path(prefix, "client_ca_file")
            check.error(where, f"no PEM certificate in {tls.client_ca_file}: {_ssl_reason(exc)}")
            return None
    context.verify_mode = {
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }.get(tls.client_auth, ssl.CERT_NONE)  # RequestClientCert: see the module docstring
    return context


def _has_certificate(check: Checker, path: str, where: str) -> bool:
    """Whether the file holds a PEM certificate, so that a bad cert_file is not blamed on key_file."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        check.error(where, f"no PEM certificate in {path}: {_ssl_reason(exc)}")
        return False
    return True


def _set_protocol(context: ssl.SSLContext, tls: _TLS) -> None:
    with warnings.catch_warnings():
        # TLS 1.0 and 1.1 are deprecated in Python too; a user who asks for them gets them.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = tls.min_version
        context.maximum_version = tls.max_version
    if tls.ciphers:
        context.set_ciphers(":".join(tls.ciphers))
    if tls.prefer_server_ciphers:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if len(tls.curves) == 1:
        context.set_ecdh_curve(tls.curves[0])
    context.set_alpn_protocols(["http/1.1"])  # what the stdlib server speaks; no h2


class _PassphraseError(Exception):
    pass


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's passphrase.
    raise _PassphraseError("the key is encrypted with a passphrase")


def _ssl_reason(exc: Exception, unknown: str = "unreadable") -> str:
    """OpenSSL's reason code (KEY_VALUES_MISMATCH); without one, `unknown` beats "[SSL] PEM lib (_ssl.c:3926)"."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or unknown
    return str(exc)


# --- http_server_config and basic_auth_users ----------------------------------------------------


def _http(check: Checker, value: Any) -> dict[str, str]:
    section = check.section(value, "http_server_config")
    if not section:
        return {}
    check.keys(section, "http_server_config", _HTTP_KEYS)
    check.boolean(section, "http2", "http_server_config", default=True)  # accepted, ignored: HTTP/1.1 only
    headers = check.section(section.get("headers"), "http_server_config.headers") or {}
    good: dict[str, str] = {}
    for name, text in headers.items():
        path = key_path("http_server_config.headers", name)
        allowed = HEADERS.get(name) if isinstance(name, str) else None
        if allowed is None:
            hint = suggest(name, tuple(HEADERS), case_only=True)
            check.error(path, f"this header cannot be set; allowed: {', '.join(HEADERS)}{hint}")
        elif not isinstance(text, str) or any(c in text for c in "\r\n\0"):
            check.error(path, f"must be a one-line string (got {check.show(text)})")
        elif allowed and text not in allowed:
            check.error(path, f"must be one of {', '.join(allowed)} (got {check.show(text)})")
        elif text:  # a blank value means: do not send the header
            good[name] = text
    return good


def _users(check: Checker, value: Any) -> dict[str, bytes]:
    section = check.section(value, "basic_auth_users")
    users: dict[str, bytes] = {}
    for user, hashed in (section or {}).items():
        path = key_path("basic_auth_users", user)
        if not isinstance(user, str) or user == "" or ":" in user:
            shown = key_path("basic_auth_users", check.show(user))
            check.error(shown, "a user name must be a non-empty string without ':'")
        elif not isinstance(hashed, str) or not _BCRYPT_RE.fullmatch(hashed):
            # The value is not shown: it is a hash at best, the plain password by mistake at worst.
            check.error(
                path,
                "must be a bcrypt hash ($2a$, $2b$ or $2y$, cost 04 to 31, 60 characters) "
                "as `htpasswd -nBC 10 \"\" | tr -d ':\\n'` prints it; the value is not shown",
            )
        else:
            users[user] = hashed.encode("ascii")
    return users
