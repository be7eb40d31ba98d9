"""Rows of `SMS_PackageStatus` read from the SMS Provider over WinRM (WS-Management Enumerate/Pull).

pywinrm carries the requests (`Protocol.send_message()`: authentication, NTLM/Kerberos/CredSSP
message encryption, fault parsing); `exporter.wsman` builds and reads them. This module decides
what to ask for, keeps to the poll's deadline, maps every failure to a `PollError` reason, and
copes with what Windows does on a long walk (shared/spec/wsman-wire.md): contexts that expire,
connections that drop between requests, pages of about 75 KB however large the envelope.
"""

from __future__ import annotations

import logging
import math
import os
import re
import ssl
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from functools import partial

import requests
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from exporter import wsman
from exporter.config import TargetConfig
from exporter.errors import PollError
from exporter.rows import PackageStatusRow, RowError, make_row

log = logging.getLogger(__name__)

PACKAGE_STATUS = "SMS_PackageStatus"
PROVIDER_LOCATION = "SMS_ProviderLocation"
SMS_NAMESPACE = "root\\SMS"
# The properties the exporter uses: a property list costs ~400 bytes a row instead of ~720.
PROPERTIES = ("PackageID", "PkgServer", "Personality", "SiteCode", "Status", "Type", "UpdateTime")
PACKAGE_STATUS_WQL = f"SELECT {', '.join(PROPERTIES)} FROM {PACKAGE_STATUS}"
# Release is a courtesy to the server's per-user operation quota; never worth waiting long for.
RELEASE_TIMEOUT = 2
_SITE_CODE = re.compile(r"^[A-Za-z0-9]{3}$")


def system_ca_file() -> str | None:
    """The operating system's CA bundle, where a corporate CA is installed with update-ca-certificates.

    Without it requests would trust only certifi's public CAs, which never issued an SMS
    Provider's certificate. None (pywinrm then takes no CA path from REQUESTS_CA_BUNDLE either)
    falls back to certifi.
    """
    cafile = ssl.get_default_verify_paths().cafile
    return cafile if cafile and os.path.isfile(cafile) else None


def site_namespace(site_code: str) -> str:
    return f"{SMS_NAMESPACE}\\site_{site_code}"


@dataclass(frozen=True, slots=True)
class _Query:
    """One class to enumerate: where it lives, and the WQL property list when one is used."""

    namespace: str
    class_name: str
    wql: str | None = None

    @property
    def uri(self) -> str:
        return wsman.resource_uri(self.namespace, None if self.wql else self.class_name)


class _Restart(Exception):
    """The enumeration died under us (context expired, operation timed out): start it again.

    Raised inside the walk and caught by `WinRMSource.rows`; a consumer never sees it.
    """

    def __init__(self, error: PollError) -> None:
        super().__init__(str(error))
        self.error = error


class WinRMSource:
    """`SMS_PackageStatus` of one SMS Provider, read with pywinrm.

    `property_list` (default) asks with the WQL property list of `PACKAGE_STATUS_WQL` (items come
    as `w:XmlFragment`); False enumerates the class URI, i.e. `SELECT *` (`p:SMS_PackageStatus`
    items). Both are kept: the second is what to fall back to should a provider refuse the query.
    """

    def __init__(self, target: TargetConfig, *, property_list: bool = True) -> None:
        self._target = target
        self._property_list = property_list
        self._site: str | None = target.site_code
        self._protocol: Protocol | None = None

    def site_code(self) -> str | None:
        return self._site

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.transport.close_session()

    def rows(self, deadline: float) -> Iterator[PackageStatusRow]:
        """Every row of the class, page by page as the pages arrive.

        When the site code is not configured it is first read from `SMS_ProviderLocation` (the
        instance with `ProviderForLocalSite` true) and kept. If the enumeration dies mid-walk (an
        expired or unknown context, an operation timeout) it is started again, once per poll.
        Rows already yielded are then yielded again: the consumer must treat rows with the same
        key as one (the collector de-duplicates by the full key, keeping the last), so a poll
        that ends without an error has yielded every row at least once. Any failure is a
        `PollError`; the password never appears in one.
        """
        try:
            restarts_left = 1
            while True:
                try:
                    yield from self._walk(deadline)
                    return
                except _Restart as restart:
                    if restarts_left == 0 or time.monotonic() >= deadline:
                        raise restart.error from None
                    restarts_left -= 1
                    log.warning("restarting the enumeration",
                                extra={"target": self._target.name, "reason": restart.error.reason,
                                       "err": self._scrub(str(restart))})
        except PollError as error:
            scrubbed = self._scrub(str(error.args[0]) if error.args else "")
            if error.args and scrubbed != error.args[0]:
                raise PollError(error.reason, scrubbed, wmi_code=error.wmi_code) from None
            raise

    # --- the walk ---------------------------------------------------------------------------

    def _walk(self, deadline: float) -> Iterator[PackageStatusRow]:
        site = self._site or self._discover_site(deadline)
        query = _Query(site_namespace(site), PACKAGE_STATUS, PACKAGE_STATUS_WQL if self._property_list else None)
        number = 0
        with closing(self._pages(query, deadline)) as pages:
            for page in pages:
                for item in page.items:
                    number += 1
                    yield _row(item, site, number)

    def _discover_site(self, deadline: float) -> str:
        query = _Query(SMS_NAMESPACE, PROVIDER_LOCATION)
        with closing(self._pages(query, deadline)) as pages:
            items = [item for page in pages for item in page.items]
        site = _local_site(items, self._target.host or "")
        log.info("site code discovered", extra={"target": self._target.name, "site": site,
                                               "source": f"{SMS_NAMESPACE}\\{PROVIDER_LOCATION}"})
        self._site = site
        return site

    def _pages(self, query: _Query, deadline: float) -> Generator[wsman.Page, None, None]:
        """Enumerate, then Pull with the newest context until the end of the sequence.

        `live` holds the context only while this generator waits for its consumer: if the walk
        stops there (consumer gone, deadline, a bad row) the context is released. A context just
        sent in a Pull is not released whatever happened to that Pull: the server consumed it.
        """
        uri = query.uri
        live: str | None = None
        try:
            page = self._request(query, deadline, "Enumerate", partial(self._enumerate, uri, query))
            while True:
                live = None if page.done else page.context
                yield page
                if live is None:
                    return
                self._check_deadline(deadline, f"Pull of {query.class_name}")
                context, live = live, None
                page = self._request(query, deadline, "Pull", partial(self._pull, uri, context))
        finally:
            if live is not None:
                self._release(uri, live)

    def _enumerate(self, uri: str, query: _Query, timeout: float) -> wsman.Envelope:
        return wsman.build_enumerate(to=self._target.endpoint, uri=uri, wql=query.wql, operation_timeout=timeout)

    def _pull(self, uri: str, context: str, timeout: float) -> wsman.Envelope:
        return wsman.build_pull(to=self._target.endpoint, uri=uri, context=context, operation_timeout=timeout)

    def _release(self, uri: str, context: str) -> None:
        """Best effort, short: the walk is already over, successful or not."""
        protocol = self._protocol
        if protocol is None:
            return
        protocol.transport.read_timeout_sec = RELEASE_TIMEOUT
        envelope = wsman.build_release(
            to=self._target.endpoint, uri=uri, context=context, operation_timeout=RELEASE_TIMEOUT / 2
        )
        try:
            protocol.send_message(envelope.text)
        except Exception as exc:  # a courtesy request: whatever went wrong, the poll's outcome stands
            log.debug("release failed (ignored)", extra={"target": self._target.name, "err": type(exc).__name__})

    # --- one request ------------------------------------------------------------------------

    def _request(
        self, query: _Query, deadline: float, action: str, build: Callable[[float], wsman.Envelope]
    ) -> wsman.Page:
        """Send one enumeration request and read its page; faults become `PollError` or `_Restart`."""
        try:
            raw, envelope = self._send(build, deadline, f"{action} of {query.class_name}")
        except WinRMOperationTimeoutError:
            # pywinrm turns the TimedOut fault (WSManFault 2150858793) into this before we see it.
            error = PollError(
                "timeout",
                f"{action} of {query.class_name}: the provider did not answer within the operation timeout",
                wmi_code=wsman.WSMAN_OPERATION_TIMEDOUT,
            )
            raise _Restart(error) from None
        except WSManFaultError as exc:
            fault = wsman.parse_fault(exc.response)
            error = wsman.fault_error(fault, namespace=query.namespace, class_name=query.class_name)
            if fault.restartable:
                raise _Restart(error) from None
            raise error from None
        page = wsman.parse_page(raw, message_id=envelope.message_id)
        log.debug("page", extra={"target": self._target.name, "action": action, "class": query.class_name,
                                 "items": len(page.items)})
        return page

    def _send(
        self, build: Callable[[float], wsman.Envelope], deadline: float, what: str
    ) -> tuple[bytes, wsman.Envelope]:
        """One request within the deadline, resent once on a fresh session if the connection dropped.

        Over http with message encryption, a kept-alive connection the server closed makes the
        next request fail (HTTP 400 with no body, or a reset): the sealing context belonged to the
        old connection. A new session authenticates again.
        """
        protocol = self._connect()
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
                             extra={"target": self._target.name, "request": what, "err": _short(exc)})
                    protocol.transport.close_session()
                    continue
                raise self._transport_error(exc, what) from exc
        raise AssertionError("unreachable")

    def _arm(self, protocol: Protocol, deadline: float, what: str) -> float:
        """Set this request's read timeout to the time left; return the OperationTimeout to ask for.

        pywinrm wants whole seconds, so the read timeout is rounded up (the deadline may be
        overrun by less than a second); the server is asked to give up a second before it.
        """
        self._check_deadline(deadline, what)
        read_timeout = max(1, math.ceil(deadline - time.monotonic()))
        protocol.transport.read_timeout_sec = read_timeout
        return min(wsman.MAX_OPERATION_TIMEOUT, max(0.5, read_timeout - 1.0))

    def _check_deadline(self, deadline: float, what: str) -> None:
        if time.monotonic() >= deadline:
            raise PollError("timeout", f"poll deadline reached before {what} ({self._where})")

    def _connect(self) -> Protocol:
        if self._protocol is None:
            self._protocol = self._new_protocol()
        return self._protocol

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
            raise PollError("auth", f"WinRM credentials incomplete for {self._where}: {exc}") from None
        except (WinRMError, ValueError) as exc:
            raise PollError("other", f"cannot set up WinRM for {self._where}: {_short(exc)}") from None

    # --- errors -----------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self._target.host}:{self._target.port}"

    def _transport_error(self, exc: Exception, what: str) -> PollError:
        """The reason and an actionable message for anything but a fault."""
        where = self._where
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
            return PollError("connection", f"cannot talk to {where}: {_short(exc)} ({what})")
        if isinstance(exc, WinRMTransportError):
            return _http_error(exc.code, where, what)
        if isinstance(exc, WinRMError):
            return PollError("other", f"WinRM error talking to {where}: {_short(exc)} ({what})")
        return PollError("other", f"{type(exc).__name__} talking to {where}: {_short(exc)} ({what})")

    def _tls_error(self, exc: Exception) -> PollError:
        root = _root_cause(exc)
        if isinstance(root, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            detail = getattr(root, "verify_message", None) or "certificate verify failed"
            return PollError(
                "connection",
                f"TLS certificate of {self._target.host} not trusted ({detail}): set tls.ca_file to the CA "
                "that issued it, or tls.verify: false",
            )
        return PollError("connection", f"TLS handshake with {self._where} failed: {_short(exc)}")

    def _scrub(self, text: str) -> str:
        """Defence in depth: server-supplied text could echo the password; never pass it on."""
        password = self._target.auth.password
        return text.replace(password, "********") if password else text


def _row(item: wsman.Item, site: str, number: int) -> PackageStatusRow:
    try:
        return make_row(
            site=_text(item, "SiteCode") or site,
            package_id=_text(item, "PackageID"),
            pkg_server=_text(item, "PkgServer"),
            type_=_text(item, "Type"),
            status=_text(item, "Status"),
            personality=_text(item, "Personality"),
            update_time=_text(item, "UpdateTime"),
        )
    except RowError as exc:
        raise PollError("parse", f"{PACKAGE_STATUS} row {number}: {exc}") from None


def _text(item: wsman.Item, name: str) -> str | None:
    value = item.get(name)
    if isinstance(value, list):
        raise RowError(f"{name} has {len(value)} values where one was expected")
    return value


def _local_site(items: list[wsman.Item], host: str) -> str:
    """The site code of the provider's own site, from `SMS_ProviderLocation` instances."""
    for item in items:
        local = _text(item, "ProviderForLocalSite")
        if (local or "").strip().lower() != "true":
            continue
        code = (_text(item, "SiteCode") or "").strip()
        if not _SITE_CODE.match(code):
            raise PollError("parse", f"{PROVIDER_LOCATION} gave an invalid site code {code[:20]!r}")
        return code
    raise PollError(
        "other",
        f"no {PROVIDER_LOCATION} instance with ProviderForLocalSite=true in {SMS_NAMESPACE} on {host}: "
        "set site_code in the target's configuration",
    )


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


def _short(exc: BaseException) -> str:
    if isinstance(exc, WinRMTransportError):
        return f"HTTP {exc.code}" + ("" if (exc.response_text or "").strip() else " with an empty body")
    root = _root_cause(exc)
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    return wsman.clean_text(str(root) or type(root).__name__)
