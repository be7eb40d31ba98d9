"""Kerberos for WinRM: tickets in a credential cache of the target's own, and the HTTP Negotiate
exchange with message encryption, through pyspnego (GSSAPI).

Why not pywinrm's own kerberos transport (pywinrm 0.5.0): it goes through its vendored
requests_kerberos and pykerberos, which read only the process's default credential cache
(KRB5CCNAME): no keytab, no password, one cache shared by every target, and nothing renews the
tickets of a daemon nobody runs `kinit` for. Here each target gets

- with `auth.keytab_file` or a password: a private in-memory credential cache, filled by the
  exporter itself (an AS exchange like `kinit`) and filled again before the ticket runs out;
- with neither: the environment's cache (`KRB5CCNAME`), as `kinit` left it.

`KerberosAuth` is a requests authentication handler that pywinrm's session uses like its own:
it answers the server's `401 WWW-Authenticate: Negotiate` with a Kerberos token (carrying the
channel binding of the server's certificate over https), checks the server's mutual
authentication token, and seals/unseals messages for pywinrm's `Encryption` ([MS-WSMV] 2.2.9.1).

Every failure is a `PollError` whose message names the client principal and the SPN tried.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests
from requests.auth import AuthBase

from exporter.config import TargetConfig
from exporter.errors import PollError, Reason
from exporter.winrm.errors import where

log = logging.getLogger("exporter.winrm")

# A ticket is fetched again when less than this share of its life is left (a 10 h ticket after
# about 6 h 40 min, a 1 min one after 40 s), so a poll never runs on a ticket about to end: MIT
# GSSAPI refuses to unseal messages of a context whose ticket has expired.
RENEW_WHEN_LEFT = 1 / 3

# MIT krb5 error codes (com_err table krb5/krb5_err.et) and what to tell the administrator.
_CLIENT_UNKNOWN = -1765328378
_SERVER_UNKNOWN = -1765328377
_PREAUTH_FAILED = -1765328360
_BAD_INTEGRITY = -1765328353
_TICKET_EXPIRED = -1765328352
_CLOCK_SKEW = -1765328347
_KDC_REPLY_SKEW = -1765328236
_KDC_UNREACHABLE = -1765328228
_REALM_UNKNOWN = -1765328230
_KDC_ADDRESS_UNKNOWN = -1765328164
_NO_CCACHE = -1765328189
_KEYTAB_ENTRY_MISSING = -1765328203
_KEY_VERSION_WRONG = -1765328154

_NEGOTIATE = re.compile(r"(?:^|,)\s*(Negotiate|Kerberos)(?:\s+([A-Za-z0-9+/=]+))?\s*(?=,|$)", re.IGNORECASE)


class KerberosLogin:
    """One target's Kerberos identity: where its tickets come from and the SPN it asks for."""

    def __init__(self, target: TargetConfig) -> None:
        auth = target.auth
        self.spn = target.spn
        self.service, _, self.spn_host = self.spn.partition("/")
        self._where = where(target)
        self._keytab = auth.keytab_file
        self._password = auth.password
        self._username = auth.username
        self._own_cache = self._keytab is not None or self._password is not None
        # Private to this target and this process: nothing else reads or writes it.
        self._ccache = f"MEMORY:sccm-exporter-{secrets.token_hex(8)}"
        self._lock = threading.Lock()
        self._renew_at = 0.0
        self.generation = 0
        self.principal = self._username or self._default_principal()

    def _default_principal(self) -> str:
        """The principal the tickets will be for: the keytab's first, or the cache's; a stand-in
        when it cannot be read yet (the failure then says why when tickets are asked for)."""
        try:
            import krb5

            ctx = krb5.init_context()
            if self._keytab is not None:
                self._keytab_principal(krb5, ctx, krb5.kt_resolve(ctx, f"FILE:{self._keytab}".encode()))
                return self.principal
            principal = krb5.cc_get_principal(ctx, krb5.cc_default(ctx))
            return str(krb5.unparse_name_flags(ctx, principal).decode())
        except Exception:  # no keytab entry, no cache, no krb5: said when tickets are asked for
            return "(the keytab's first principal)" if self._keytab else "(the principal in KRB5CCNAME)"

    @property
    def source(self) -> str:
        """Where the tickets come from, for messages."""
        if self._keytab is not None:
            return f"keytab {self._keytab}"
        if self._password is not None:
            return "password"
        return "the credential cache of the environment (KRB5CCNAME)"

    def refresh(self) -> int:
        """Make sure a ticket is there with enough life left; return its generation.

        A new generation means the previous ticket is about to end: sessions authenticated with
        it must be replaced (`Transport` closes them before their next request).
        """
        if not self._own_cache:
            return self.generation
        with self._lock:
            if time.time() >= self._renew_at:
                self._kinit()
                self.generation += 1
            return self.generation

    def context(self, channel_bindings: Any) -> tuple[Any, bytes]:
        """A new client security context for the SPN and its first token (this asks the KDC for
        the service ticket, unless the cache holds one)."""
        import spnego
        from spnego.exceptions import SpnegoError

        credential = spnego.KerberosCCache(ccache=self._ccache) if self._own_cache else None
        try:
            context = spnego.client(
                credential,
                hostname=self.spn_host,
                service=self.service,
                protocol="kerberos",
                channel_bindings=channel_bindings,
                context_req=spnego.ContextReq.default,
            )
            token = context.step()
        except SpnegoError as exc:
            raise self.error(exc, "getting a service ticket") from None
        except ImportError as exc:
            raise PollError("other", f"Kerberos needs pyspnego with gssapi: {exc} (pip install "
                            "'sccm-package-exporter[kerberos]')") from None
        return context, token or b""

    def close(self) -> None:
        """Forget the tickets of the private cache (a reload or shutdown)."""
        if not self._own_cache:
            return
        try:
            import krb5

            ctx = krb5.init_context()
            krb5.cc_destroy(ctx, krb5.cc_resolve(ctx, self._ccache.encode()))
        except Exception as exc:  # nothing was cached yet, or krb5 is missing: nothing to forget
            log.debug("Kerberos cache not destroyed", extra={"err": type(exc).__name__})

    def _kinit(self) -> None:
        """Get a ticket-granting ticket from the KDC into the private cache (what `kinit` does)."""
        try:
            import krb5
        except ImportError as exc:
            raise PollError("other", f"Kerberos needs the krb5 package: {exc} (pip install "
                            "'sccm-package-exporter[kerberos]')") from None
        try:
            ctx = krb5.init_context()
            options = krb5.get_init_creds_opt_alloc(ctx)
            krb5.get_init_creds_opt_set_canonicalize(options, True)
            if self._keytab is not None:
                keytab = krb5.kt_resolve(ctx, f"FILE:{self._keytab}".encode())
                principal = self._keytab_principal(krb5, ctx, keytab)
                creds = krb5.get_init_creds_keytab(ctx, principal, options, keytab=keytab)
            else:
                principal = krb5.parse_name_flags(ctx, (self._username or "").encode())
                creds = krb5.get_init_creds_password(ctx, principal, options, password=(self._password or "").encode())
            ccache = krb5.cc_resolve(ctx, self._ccache.encode())
            krb5.cc_initialize(ctx, ccache, creds.client)
            krb5.cc_store_cred(ctx, ccache, creds)
        except krb5.Krb5Error as exc:
            raise self.error(exc, "getting a ticket") from None
        start, end = float(creds.times.starttime or creds.times.authtime), float(creds.times.endtime)
        self._renew_at = end - (end - start) * RENEW_WHEN_LEFT
        log.info(
            "Kerberos ticket obtained",
            extra={"principal": self.principal, "from": "keytab" if self._keytab else "password",
                   "expires": _when(end)},
        )

    def _keytab_principal(self, krb5: Any, ctx: Any, keytab: Any) -> Any:
        """The principal to get tickets for: auth.username, or the keytab's first (then named in
        `principal`)."""
        if self._username:
            return krb5.parse_name_flags(ctx, self._username.encode())
        entries = list(keytab)
        if not entries:
            raise PollError("auth", f"the keytab {self._keytab} holds no key (export one with ktpass)")
        # A copy: the entry's principal is freed with the entry (a use after free otherwise).
        principal = copy.copy(entries[0].principal)
        self.principal = krb5.unparse_name_flags(ctx, principal).decode()
        return principal

    def error(self, exc: BaseException, doing: str) -> PollError:
        """What a Kerberos failure means, with the principal and the SPN in the message."""
        code = _krb5_code(exc)
        who = f"(client {self.principal}, SPN {self.spn})"
        reason, advice = _advice(code, self, exc)
        return PollError(reason, f"Kerberos failed {doing} for {self._where}: {advice} {who}")


def _advice(code: int | None, login: KerberosLogin, exc: BaseException) -> tuple[Reason, str]:
    """The reason and what to do, by the krb5 error code (or the GSSAPI error kind)."""
    table: dict[int, tuple[Reason, Callable[[], str]]] = {
        _CLIENT_UNKNOWN: ("auth", lambda: "the KDC does not know the client principal (check auth.username's "
                          "spelling and realm, or the keytab's principal)"),
        _SERVER_UNKNOWN: ("auth", lambda: _no_spn(login)),
        _PREAUTH_FAILED: ("auth", lambda: _wrong_key(login)),
        _BAD_INTEGRITY: ("auth", lambda: _wrong_key(login)),
        _KEY_VERSION_WRONG: ("auth", lambda: _wrong_key(login)),
        _KEYTAB_ENTRY_MISSING: ("auth", lambda: f"the keytab {login._keytab} has no key for the principal "
                                "(export it with ktpass for that account)"),
        _CLOCK_SKEW: ("auth", lambda: "the clocks of this host and the KDC differ by more than the allowed skew "
                      "(5 minutes by default): synchronise both with NTP"),
        _KDC_REPLY_SKEW: ("auth", lambda: "the clocks of this host and the KDC differ by more than the allowed "
                          "skew (5 minutes by default): synchronise both with NTP"),
        _TICKET_EXPIRED: ("auth", lambda: _expired(login)),
        _NO_CCACHE: ("auth", lambda: "no Kerberos ticket in the credential cache of the environment (KRB5CCNAME): "
                     "run kinit, or set auth.keytab_file (or auth.username with a password)"),
        _KDC_UNREACHABLE: ("connection", lambda: "cannot reach a KDC of the realm (check krb5.conf [realms] kdc, "
                           "KRB5_CONFIG, DNS SRV records _kerberos._tcp, and port 88)"),
        _REALM_UNKNOWN: ("connection", lambda: "no KDC is known for the realm (add it to krb5.conf [realms], or "
                         "set dns_lookup_kdc = true)"),
        _KDC_ADDRESS_UNKNOWN: ("connection", lambda: "the KDC's address does not resolve (krb5.conf [realms] kdc)"),
    }
    if code in table:
        reason, advice = table[code]
        return reason, advice()
    if type(exc).__name__ in ("ExpiredCredentialsError", "ExpiredContextError", "CredentialsExpired"):
        return "auth", _expired(login)
    if type(exc).__name__ in ("MissingCredentialsError", "NoCredentialError"):
        return "auth", _no_ticket(login)
    return "auth", _first_line(exc)


def _no_spn(login: KerberosLogin) -> str:
    said = f"no account has the SPN {login.spn} (the KDC's 'server not found'): "
    if _is_address(login.spn_host):
        return (said + "SPNs name hosts, not addresses: set auth.kerberos_hostname_override to the provider's "
                "host name (cm01.corp.example.com)")
    computer = login.spn_host.split(".")[0].upper()
    return (said + f"register it on the provider's computer account (setspn -S {login.spn} {computer}), or set "
            "auth.kerberos_hostname_override to the host name the SPN is registered for, or "
            "auth.kerberos_service: WSMAN")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _wrong_key(login: KerberosLogin) -> str:
    if login._keytab is not None:
        return ("the KDC refused the keytab's key (the account's password changed since the keytab was made, "
                "so its key version is old: export it again with ktpass)")
    return "the KDC refused the password (wrong password, or the account is locked)"


def _expired(login: KerberosLogin) -> str:
    if login._own_cache:
        return "the ticket expired and could not be renewed"
    return ("the ticket in the credential cache of the environment (KRB5CCNAME) expired and cannot be renewed "
            "by the exporter: run kinit again, or set auth.keytab_file so the exporter gets its own tickets")


def _no_ticket(login: KerberosLogin) -> str:
    return ("no usable Kerberos ticket in the credential cache of the environment (KRB5CCNAME): run kinit, "
            "or set auth.keytab_file (or auth.username with a password)")


def _krb5_code(exc: BaseException) -> int | None:
    """The krb5 error code of a krb5 error, or the minor status of a GSSAPI one, as a signed number."""
    code = getattr(exc, "err_code", None)
    if code is None:
        base = getattr(exc, "base_error", None)
        code = getattr(base, "min_code", None) if base is not None else None
    if not isinstance(code, int) or code == 0:
        return None
    return code - (1 << 32) if code >= (1 << 31) else code


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "base_error", None) or exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _server_token(response: requests.Response) -> tuple[str, bytes | None] | None:
    """The scheme the server offers (Negotiate or Kerberos) and its token, if any."""
    header = response.headers.get("WWW-Authenticate", "")
    match = _NEGOTIATE.search(header)
    if match is None:
        return None
    token = match.group(2)
    return match.group(1), base64.b64decode(token) if token else None


def channel_bindings(response: requests.Response) -> Any:
    """The tls-server-end-point channel binding (RFC 5929) of the certificate the server showed on
    this connection, as Windows checks it with CbtHardeningLevel Strict; None over http."""
    from spnego.channel_bindings import GssChannelBindings

    raw: Any = response.raw
    try:
        der = raw._fp.fp.raw._sock.getpeercert(True)
    except AttributeError:
        return None
    if not der:
        return None
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_der_x509_certificate(der)
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:  # an algorithm cryptography cannot name: RFC 5929 says SHA-256 then
        algorithm = None
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(der)
    return GssChannelBindings(application_data=b"tls-server-end-point:" + digest.finalize())


def use_kerberos(transport: Any, login: KerberosLogin) -> None:
    """Make a pywinrm `winrm.transport.Transport` authenticate with `KerberosAuth`.

    pywinrm 0.5.0's `build_session` refuses transport kerberos without pykerberos, so this one
    replaces it for that instance: the same session settings (certificate validation, CA file,
    headers, no proxy from the environment) with our handler, and message encryption set up as
    pywinrm does it (an empty POST authenticates, then `Encryption(session, "kerberos")`).
    """

    def build_session() -> requests.Session:
        if transport.session is not None:
            return transport.session  # type: ignore[no-any-return]
        session = requests.Session()
        session.trust_env = False  # no proxy, CA bundle or .netrc from the environment
        ca_file = transport.ca_trust_path
        if transport.server_cert_validation != "validate":
            session.verify = False
        elif isinstance(ca_file, str) and ca_file != "legacy_requests":
            session.verify = ca_file
        session.headers.update(transport.default_headers)
        session.auth = KerberosAuth(login, send_cbt=transport.send_cbt)
        mode = transport.message_encryption
        if mode == "always" or (mode == "auto" and not transport.endpoint.lower().startswith("https")):
            transport.setup_encryption(session)
        transport.session = session
        return session

    transport.build_session = build_session


class KerberosAuth(AuthBase):
    """HTTP Negotiate with Kerberos for one pywinrm session (one security context at a time).

    pywinrm's `Encryption(session, "kerberos")` seals messages with `wrap_winrm` and unseals
    replies with `unwrap_winrm`, the methods pywinrm's vendored requests_kerberos offers.
    """

    def __init__(self, login: KerberosLogin, send_cbt: bool = True) -> None:
        self._login = login
        self._send_cbt = send_cbt
        self._context: Any = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Connection"] = "Keep-Alive"
        request.register_hook("response", self._on_response)  # type: ignore[no-untyped-call]
        return request

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401:
            self._mutual(response)
            return response
        if "Authorization" in response.request.headers:
            raise self._refused(response)
        offered = _server_token(response)
        if offered is None:
            schemes = response.headers.get("WWW-Authenticate", "nothing")
            raise PollError("auth", f"{self._login._where} does not offer Kerberos (WWW-Authenticate: {schemes}): "
                            "enable Negotiate on its WinRM service (winrm set winrm/config/service/auth "
                            "'@{Kerberos=\"true\"}')")
        bindings = channel_bindings(response) if self._send_cbt else None
        self._context, token = self._login.context(bindings)
        response.content  # noqa: B018 - read the 401's body so its connection goes back to the pool
        response.raw.release_conn()
        retry = response.request.copy()
        retry.headers["Authorization"] = f"{offered[0]} {base64.b64encode(token).decode()}"
        answer: requests.Response = response.connection.send(retry, **kwargs)  # type: ignore[attr-defined]
        answer.history.append(response)
        if answer.status_code == 401:
            raise self._refused(answer)
        self._mutual(answer)
        return answer

    def _mutual(self, response: requests.Response) -> None:
        """Finish the context with the server's token: Kerberos mutual authentication.

        Required on a successful answer; an error answer (a SOAP fault is HTTP 500) may come
        without one and is left for pywinrm to report.
        """
        context = self._context
        if context is None or context.complete:
            return
        offered = _server_token(response)
        from spnego.exceptions import SpnegoError

        try:
            if offered is not None and offered[1] is not None:
                context.step(offered[1])
        except SpnegoError as exc:
            raise self._login.error(exc, "checking the server's identity") from None
        if not context.complete and response.status_code < 400:
            raise PollError(
                "auth",
                f"{self._login._where} did not prove its identity (no Kerberos mutual authentication token "
                f"in its answer) (client {self._login.principal}, SPN {self._login.spn})",
            )

    def _refused(self, response: requests.Response) -> PollError:
        return PollError(
            "auth",
            f"{self._login._where} refused the Kerberos ticket (HTTP {response.status_code}): the SPN may "
            "belong to another account than the provider's computer (setspn -Q to find it), the clocks of "
            "the provider and the KDC may differ by more than 5 minutes, or the account lacks WinRM access "
            f"(Remote Management Users) (client {self._login.principal}, SPN {self._login.spn})",
        )

    def wrap_winrm(self, host: str, message: bytes) -> tuple[bytes, bytes]:
        from spnego.exceptions import SpnegoError

        try:
            result = self._context.wrap_winrm(message)
        except SpnegoError as exc:
            raise self._login.error(exc, "sealing a request") from None
        return result.data, result.header

    def unwrap_winrm(self, host: str, message: bytes, header: bytes) -> bytes:
        from spnego.exceptions import SpnegoError

        try:
            return bytes(self._context.unwrap_winrm(header, message))
        except SpnegoError as exc:
            raise self._login.error(exc, "unsealing a reply") from None
