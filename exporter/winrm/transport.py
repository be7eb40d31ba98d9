"""pywinrm sessions to one SMS Provider: a connection per enumeration, one request within a
deadline, resent once on a fresh session if the connection dropped, and every failure that is
not a SOAP fault mapped to a `PollError` reason with a message an administrator can act on.

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

import requests
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from exporter.config import TargetConfig
from exporter.errors import PollError
from exporter.winrm.envelopes import MAX_OPERATION_TIMEOUT, Envelope, build_release, clean_text
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

    def __init__(self, target: TargetConfig) -> None:
        self._target = target
        self._protocols: dict[Connection, Protocol] = {}

    @property
    def where(self) -> str:
        return f"{self._target.host}:{self._target.port}"

    def close(self) -> None:
        for protocol in list(self._protocols.values()):
            protocol.transport.close_session()

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
        protocol = self._connect(connection)
        for attempt in (1, 2):
            operation_timeout = self._arm(protocol, deadline, what)
            envelope = build(operation_timeout)
            try:
                protocol.transport.build_session().trust_env = False  # no proxy or .netrc from the environment
                return protocol.send_message(envelope.text), envelope
            except (WSManFaultError, WinRMOperationTimeoutError):
                raise
            except Exception as exc:
                if attempt == 1 and _connection_dropped(exc) and time.monotonic() < deadline:
                    log.info("connection dropped; resending once",
                             extra={"target": self._target.name, "request": what, "err": short(exc)})
                    protocol.transport.close_session()
                    continue
                raise self._error(exc, what) from exc
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
            protocol.send_message(envelope.text)
        except Exception as exc:  # a courtesy request: whatever went wrong, the poll's outcome stands
            log.debug("release failed (ignored)", extra={"target": self._target.name, "err": type(exc).__name__})

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
        return protocol

    def _new_protocol(self) -> Protocol:
        target, auth, tls = self._target, self._target.auth, self._target.tls
        certificate = auth.transport == "certificate"
        read_timeout = max(2, math.ceil(target.timeout))
        try:
            return Protocol(
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

    # --- errors -----------------------------------------------------------------------------

    def _error(self, exc: Exception, what: str) -> PollError:
        """The reason and an actionable message for anything but a fault."""
        where = self.where
        if isinstance(exc, PollError):
            return exc
        if isinstance(exc, InvalidCredentialsError):
            user = self._target.auth.username or "(certificate)"
            return PollError("auth", f"{where} rejected the credentials of {user} (HTTP 401, {what})")
        if isinstance(exc, requests.exceptions.SSLError):
            return self._tls_error(exc)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return PollError("timeout", f"connecting to {where} timed out ({what})")
        if isinstance(exc, requests.exceptions.Timeout):
            return PollError("timeout", f"{where} did not answer in time ({what})")
        if isinstance(exc, requests.exceptions.RequestException):
            return PollError("connection", f"cannot talk to {where}: {short(exc)} ({what})")
        if isinstance(exc, WinRMTransportError):
            return _http_error(exc.code, where, what)
        if isinstance(exc, WinRMError):
            return PollError("other", f"WinRM error talking to {where}: {short(exc)} ({what})")
        return PollError("other", f"{type(exc).__name__} talking to {where}: {short(exc)} ({what})")

    def _tls_error(self, exc: Exception) -> PollError:
        root = _root_cause(exc)
        if isinstance(root, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            detail = getattr(root, "verify_message", None) or "certificate verify failed"
            return PollError(
                "connection",
                f"TLS certificate of {self._target.host} not trusted ({detail}): set tls.ca_file to the CA "
                "that issued it, or tls.verify: false",
            )
        return PollError("connection", f"TLS handshake with {self.where} failed: {short(exc)}")

    def scrub(self, text: str) -> str:
        """Defence in depth: server-supplied text could echo the password; never pass it on."""
        password = self._target.auth.password
        return text.replace(password, "********") if password else text


def _connection_dropped(exc: Exception) -> bool:
    """The failures a resend on a new connection can cure (not TLS, not timeouts)."""
    if isinstance(exc, WinRMTransportError):
        return exc.code == 400 and not (exc.response_text or "").strip()
    if isinstance(exc, requests.exceptions.SSLError | requests.exceptions.Timeout):
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError)


def _http_error(status: int, where: str, what: str) -> PollError:
    if status in (401, 403):
        return PollError("auth", f"{where} refused access (HTTP {status}, {what})")
    if status == 400:
        return PollError(
            "connection", f"{where} answered HTTP 400 with no body: the connection's session was lost ({what})"
        )
    if status in (408, 502, 503, 504):
        return PollError("connection", f"{where} or a proxy on the way is unavailable (HTTP {status}, {what})")
    if status == 404:
        return PollError("other", f"no WS-Management endpoint at {where}/wsman (HTTP 404)")
    return PollError("other", f"{where} answered HTTP {status} ({what})")


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error under requests/urllib3 wrappers (ConnectionRefusedError, SSL errors...)."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        reason = getattr(current, "reason", None)
        inner = next((arg for arg in current.args if isinstance(arg, BaseException)), None)
        following = inner or (reason if isinstance(reason, BaseException) else None) or current.__cause__
        if following is None:
            break
        current = following
    return current


def short(exc: BaseException) -> str:
    """An exception in a few words for a log line or a message: never a whole body."""
    if isinstance(exc, WinRMTransportError):
        return f"HTTP {exc.code}" + ("" if (exc.response_text or "").strip() else " with an empty body")
    root = _root_cause(exc)
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    return clean_text(str(root) or type(root).__name__)
