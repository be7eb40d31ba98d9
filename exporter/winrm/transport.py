"""pywinrm sessions to one SMS Provider: a connection per enumeration, one request within a
deadline, resent once on a fresh session if the connection dropped (`errors` says which failures
a resend can cure and what the others mean).

pywinrm carries the requests (`Protocol.send_message()`: authentication, NTLM/Kerberos/CredSSP
message encryption, fault parsing); `exporter.winrm.envelopes` builds them.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
import time
from collections.abc import Callable

from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from exporter.capture import Recorder
from exporter.config import TargetConfig
from exporter.errors import PollError
from exporter.winrm.clientcert import ClientCertificate, read_certificate, warn_if_key_readable
from exporter.winrm.credssp import answer_after_delegation
from exporter.winrm.envelopes import MAX_OPERATION_TIMEOUT, Envelope, build_release
from exporter.winrm.errors import connection_dropped, short, transport_error, where
from exporter.winrm.kerberos import KerberosLogin, use_kerberos
from exporter.winrm.plan import Connection

log = logging.getLogger("exporter.winrm")

# Release is a courtesy to the server's per-user operation quota; never worth waiting long for.
RELEASE_TIMEOUT = 2


def system_ca_file() -> str | None:
    """The operating system's CA bundle, where a corporate CA is installed with update-ca-certificates.

    Without it requests would trust only certifi's public CAs, which never issued an SMS
    Provider's certificate. None (pywinrm then takes no CA path from REQUESTS_CA_BUNDLE either)
    falls back to certifi.
    """
    cafile = ssl.get_default_verify_paths().cafile
    return cafile if cafile and os.path.isfile(cafile) else None


class Transport:
    """The pywinrm Protocols (HTTP sessions) of one target, one per connection, and how to use them."""

    def __init__(self, target: TargetConfig, recorder: Recorder | None = None) -> None:
        self._target = target
        self._recorder = recorder  # `--record`: every request sent, and what came back
        self._protocols: dict[Connection, Protocol] = {}
        self._kerberos = KerberosLogin(target) if target.auth.transport == "kerberos" else None
        self._tickets: dict[Connection, int] = {}  # the ticket generation each session authenticated with
        self._certificate: tuple[tuple[int, int], ClientCertificate] | None = None
        if target.auth.transport == "certificate":
            warn_if_key_readable(target.tls.key_file, target.name)  # once per target, when its source is built

    @property
    def where(self) -> str:
        return where(self._target)

    def close(self) -> None:
        for protocol in list(self._protocols.values()):
            protocol.transport.close_session()
        if self._kerberos is not None:
            self._kerberos.close()

    def check_deadline(self, deadline: float, what: str) -> None:
        if time.monotonic() >= deadline:
            raise PollError("timeout", f"poll deadline reached before {what} ({self.where})")

    def send(
        self, connection: Connection, build: Callable[[float], Envelope], deadline: float, what: str
    ) -> tuple[bytes, Envelope]:
        """One request within the deadline, resent once on a fresh session if the connection dropped.

        Over http with message encryption, a kept-alive connection the server closed makes the
        next request fail (HTTP 400 with no body, or a reset): the sealing context belonged to the
        old connection. A new session authenticates again. SOAP faults are raised as pywinrm
        raises them (`WSManFaultError`, `WinRMOperationTimeoutError`) for the caller to read.
        """
        if self._target.auth.transport == "certificate":
            self._check_certificate()
        protocol = self._connect(connection)
        for attempt in (1, 2):
            operation_timeout = self._arm(protocol, deadline, what)
            envelope = build(operation_timeout)
            try:
                return self._send_once(protocol, connection, envelope.text, attempt), envelope
            except (WSManFaultError, WinRMOperationTimeoutError):
                raise
            except Exception as exc:
                if attempt == 1 and connection_dropped(exc) and time.monotonic() < deadline:
                    log.info("connection dropped; resending once",
                             extra={"target": self._target.name, "request": what, "err": short(exc)})
                    protocol.transport.close_session()
                    continue
                if self._kerberos is not None:
                    # A refused or expired security context: the next request authenticates anew.
                    protocol.transport.close_session()
                raise transport_error(exc, self._target, what) from exc
        raise AssertionError("unreachable")

    def release(self, connection: Connection, uri: str, context: str) -> None:
        """Best effort, short: the walk is already over, successful or not."""
        protocol = self._protocols.get(connection)
        if protocol is None:
            return
        protocol.transport.read_timeout_sec = RELEASE_TIMEOUT
        envelope = build_release(to=self._target.endpoint, uri=uri, context=context,
                                 operation_timeout=RELEASE_TIMEOUT / 2)
        try:
            self._send_once(protocol, connection, envelope.text, 1)
        except Exception as exc:  # a courtesy request: whatever went wrong, the poll's outcome stands
            log.debug("release failed (ignored)", extra={"target": self._target.name, "err": type(exc).__name__})

    def _send_once(self, protocol: Protocol, connection: Connection, text: str, attempt: int) -> bytes:
        """One request on the connection's session; recorded, failures included, when recording."""
        if self._recorder is None:
            protocol.transport.build_session().trust_env = False  # no proxy or .netrc from the environment
            return protocol.send_message(text)  # type: ignore[no-any-return]
        exchange = self._recorder.begin(connection[0], connection[1], text, attempt=attempt)
        try:
            session = protocol.transport.build_session()
            session.trust_env = False
            # On the session in use whatever built it (pywinrm, or use_kerberos): its HTTP status and headers.
            exchange.watch(session)
            reply: bytes = protocol.send_message(text)
        except BaseException as exc:
            exchange.failed(exc)
            raise
        exchange.replied(reply)
        return reply

    def _arm(self, protocol: Protocol, deadline: float, what: str) -> float:
        """Set this request's read timeout to the time left; return the OperationTimeout to ask for.

        pywinrm wants whole seconds, so the read timeout is rounded up (the deadline may be
        overrun by less than a second); the server is asked to give up a second before it.
        """
        self.check_deadline(deadline, what)
        read_timeout = max(1, math.ceil(deadline - time.monotonic()))
        protocol.transport.read_timeout_sec = read_timeout
        return min(MAX_OPERATION_TIMEOUT, max(0.5, read_timeout - 1.0))

    def _connect(self, connection: Connection) -> Protocol:
        protocol = self._protocols.get(connection)
        if protocol is None:
            protocol = self._protocols[connection] = self._new_protocol()
        if self._kerberos is not None:
            generation = self._kerberos.refresh()
            if self._tickets.get(connection, generation) != generation:
                # Its security context ends with the old ticket; a new session authenticates anew.
                protocol.transport.close_session()
            self._tickets[connection] = generation
        return protocol

    def _check_certificate(self) -> None:
        """Before a request: the client certificate must be valid now, by this host's clock.

        The provider would refuse it with a TLS alert that names no date; this says which date.
        The file is parsed again only when it changed (a renewed certificate is used at once).
        """
        path = self._target.tls.cert_file or ""
        try:
            info = os.stat(path)
            key = (info.st_mtime_ns, info.st_size)
            if self._certificate is None or self._certificate[0] != key:
                self._certificate = (key, read_certificate(path))
        except (OSError, ValueError) as exc:
            detail = f"cannot read the client certificate {path}: {exc.strerror}" if isinstance(exc, OSError) else exc
            raise PollError("auth", f"{detail} (tls.cert_file, {self.where})") from None
        problem = self._certificate[1].problem()
        if problem is not None:
            raise PollError("auth", f"{problem} (tls.cert_file, {self.where})")

    def _new_protocol(self) -> Protocol:
        target, auth, tls = self._target, self._target.auth, self._target.tls
        certificate = auth.transport == "certificate"
        read_timeout = max(2, math.ceil(target.timeout))
        try:
            protocol = Protocol(
                target.endpoint,
                transport=auth.transport,
                username=auth.username,
                password=auth.password,
                message_encryption=auth.message_encryption,
                server_cert_validation="validate" if tls.verify else "ignore",
                ca_trust_path=tls.ca_file or system_ca_file(),  # type: ignore[arg-type]
                cert_pem=tls.cert_file if certificate else None,
                cert_key_pem=tls.key_file if certificate else None,
                read_timeout_sec=read_timeout,
                operation_timeout_sec=read_timeout - 1,
                proxy=None,  # pywinrm's default would take a proxy from the environment
            )
        except InvalidCredentialsError as exc:
            raise PollError("auth", f"WinRM credentials incomplete for {self.where}: {exc}") from None
        except (WinRMError, ValueError) as exc:
            raise PollError("other", f"cannot set up WinRM for {self.where}: {short(exc)}") from None
        if self._kerberos is not None:
            use_kerberos(protocol.transport, self._kerberos)
        if auth.transport == "credssp" and "\\" in (auth.username or ""):
            # pywinrm 0.5.0's Protocol() does not pass credssp_auth_mechanism on to its Transport,
            # which then asks requests-credssp (2.0.0) for "auto": SPNEGO inside CredSSP, Kerberos
            # first. A DOMAIN\user name is no Kerberos principal: pyspnego (0.12) would ask the
            # default realm's KDC for it in vain (a round trip or a timeout on every new
            # connection) before falling back to NTLM, which is what such a name can do.
            protocol.transport.credssp_auth_mechanism = "ntlm"
        if auth.transport == "credssp":
            answer_after_delegation(protocol.transport)
        return protocol

    def scrub(self, text: str) -> str:
        """Defence in depth: server-supplied text could echo the password; never pass it on."""
        password = self._target.auth.password
        return text.replace(password, "********") if password else text
