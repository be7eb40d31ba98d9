"""Rows of the collectors' classes read from the SMS Provider over WinRM (WS-Management Enumerate/Pull).

pywinrm carries the requests (`Protocol.send_message()`: authentication, NTLM/Kerberos/CredSSP
message encryption, fault parsing); `exporter.wsman` builds and reads them. This module decides
what to ask for, keeps to the poll's deadline, maps every failure to a `PollError` reason, and
copes with what Windows does on a long walk (shared/spec/wsman-wire.md): contexts that expire,
connections that drop between requests, pages of about 75 KB however large the envelope.

A large site is thousands of round trips. To hide their latency, `parallel_enumerations`
enumerations of the class run at once, each on its own connection, over disjoint slices of the
rows chosen by the last character of `PackageID` (site code + five hex digits: it spreads rows
evenly), and their pages are merged as they arrive. One slice failing fails the poll. Pages are
read as they come (`exporter.pagerows`), never collected first.

The optional collectors' classes are read the same way, each with its explicit property list and
on connections of its own (the collectors of a poll run at once): `SMS_PackageStatusDistPointsSummarizer`,
as large as the core table, in the same PackageID slices; `SMS_PackageBaseclass` and
`SMS_DistributionPointInfo`, a few thousand rows at most, in one enumeration each. Their pages are
read by `pagerows.FragmentReader`, or by the general parser (`wsman.parse_page`) when they are not
in its plain shape.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import re
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from typing import Any

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
from exporter.collectors import dp_content_state, dp_info, package_info, package_status
from exporter.collectors.dp_content_state import DPContentRow
from exporter.collectors.dp_info import DPInfoRow
from exporter.collectors.package_info import PackageInfoRow
from exporter.config import TargetConfig
from exporter.errors import PollError
from exporter.pagerows import FragmentReader, PageReader
from exporter.rows import PackageStatusRow, RowError, item_text

log = logging.getLogger(__name__)

PROVIDER_LOCATION = "SMS_ProviderLocation"
SMS_NAMESPACE = "root\\SMS"
# Release is a courtesy to the server's per-user operation quota; never worth waiting long for.
RELEASE_TIMEOUT = 2
_SITE_CODE = re.compile(r"^[A-Za-z0-9]{3}$")
# The last characters of PackageIDs (site code + 5 hex digits), dealt out to the slices.
SLICE_CHARACTERS = "0123456789ABCDEF"
# MaxElements is chosen so that that many items fill MaxEnvelopeSize without exceeding it: from a
# guess per item before the first page, then from the largest bytes per item seen so far. The
# margin covers items longer than the average (a long PkgServer) and the envelope around them.
FIRST_ITEM_BYTES = {True: 1024, False: 2048}  # property list, SELECT *
ENVELOPE_RESERVE = 4096
ENVELOPE_GUESS = 1500  # bytes of a reply around its items (header, context), when not measured
ITEM_MARGIN = 1.25
# Pages read ahead per enumeration while the poll thread reads the previous ones.
PAGES_AHEAD = 2


def slice_predicates(parallel: int) -> list[str | None]:
    """WQL conditions on PackageID that split the rows into `parallel` disjoint slices covering all.

    Each but the last slice takes some last characters (`PackageID LIKE '%[0123]'`); the last
    takes every other character and the empty ID (`LIKE '%[^0123456789AB]' OR PackageID = ''`),
    so that every row is in exactly one slice whatever its ID. Sets of characters without ranges
    mean the same to WMI's WQL and to the SQL the SMS Provider turns it into; LIKE ignores case.
    """
    if parallel <= 1:
        return [None]
    count = min(parallel, len(SLICE_CHARACTERS))
    size, extra = divmod(len(SLICE_CHARACTERS), count)
    sets: list[str] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        sets.append(SLICE_CHARACTERS[start:end])
        start = end
    predicates: list[str | None] = [f"PackageID LIKE '%[{chars}]'" for chars in sets[:-1]]
    predicates.append(f"PackageID LIKE '%[^{''.join(sets[:-1])}]' OR PackageID = ''")
    return predicates


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


def wql_select(class_name: str, properties: tuple[str, ...]) -> str:
    """The WQL of an explicit property list: never `SELECT *`, some properties are lazy and large."""
    return f"SELECT {', '.join(properties)} FROM {class_name}"


PACKAGE_STATUS_WQL = wql_select(package_status.CLASS_NAME, package_status.PROPERTIES)


@dataclass(frozen=True, slots=True)
class _Query:
    """One class to enumerate: where it lives, and the WQL property list when one is used.

    `split`: replies are taken apart by `wsman.split_page` for the fast row reader, instead of
    being parsed whole. `slice` names the PackageID slice in messages, when there are several.
    """

    namespace: str
    class_name: str
    wql: str | None = None
    split: bool = False
    slice: str = ""
    lane: int = 0  # which of the class's enumerations: each has a connection of its own

    @property
    def uri(self) -> str:
        return wsman.resource_uri(self.namespace, None if self.wql else self.class_name)

    @property
    def connection(self) -> _Connection:
        return (self.class_name, self.lane)


# A connection is named by the class it reads and its lane: the collectors of a poll read their
# classes at once, and a pywinrm Protocol (one HTTP session) serves one request at a time.
_Connection = tuple[str, int]


@dataclass
class _Pacing:
    """MaxElements for the next request of one enumeration (see FIRST_ITEM_BYTES)."""

    item_bytes: float  # the guess, until a page with items came back
    most: float = 0.0  # the largest bytes per item of a page so far, with the margin

    def max_elements(self) -> int:
        per_item = self.most or self.item_bytes
        return max(1, min(wsman.MAX_ELEMENTS, int((wsman.MAX_ENVELOPE_SIZE - ENVELOPE_RESERVE) / per_item)))

    def saw(self, size: int, items: int) -> None:
        """A page came back holding `items` instances in `size` bytes."""
        if items:
            self.most = max(self.most, size * ITEM_MARGIN / items)


@dataclass
class _Lanes:
    """The pages of parallel enumerations, handed from their threads to the poll's thread."""

    pages: queue.Queue[tuple[int, wsman.RawPage | BaseException | None]]
    stop: threading.Event = field(default_factory=threading.Event)

    def put(self, lane: int, item: wsman.RawPage | BaseException | None) -> bool:
        """Hand over one item; False when the consumer stopped (then nobody will read it)."""
        while not self.stop.is_set():
            try:
                self.pages.put((lane, item), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


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
    The property list is also what lets several enumerations run at once (a WQL filter per
    slice); with `SELECT *` there is one.
    """

    def __init__(self, target: TargetConfig, *, property_list: bool = True) -> None:
        self._target = target
        self._property_list = property_list
        self._site: str | None = target.site_code
        self._lanes = max(1, target.parallel_enumerations if property_list else 1)
        # One pywinrm Protocol (one HTTP session, one authenticated connection) per enumeration.
        self._protocols: dict[_Connection, Protocol] = {}
        self._reader: PageReader | None = None
        # Site discovery is shared by the collectors of a poll: the first one asks, the others
        # wait for its answer; a failure is kept for the rest of that poll (same deadline).
        self._discovery = threading.Lock()
        self._discovery_failure: tuple[float, PollError] | None = None

    def site_code(self) -> str | None:
        return self._site

    def close(self) -> None:
        for protocol in list(self._protocols.values()):
            protocol.transport.close_session()

    def rows(self, deadline: float) -> Iterator[PackageStatusRow]:
        """Every row of `SMS_PackageStatus`, page by page as the pages arrive.

        When the site code is not configured it is first read from `SMS_ProviderLocation` (the
        instance with `ProviderForLocalSite` true) and kept. If an enumeration dies mid-walk (an
        expired or unknown context, an operation timeout) it is started again, once per slice
        and poll. Rows already yielded are then yielded again: the consumer must treat rows with
        the same key as one (the collector de-duplicates by the full key, keeping the last), so
        a poll that ends without an error has yielded every row at least once. Any failure, of
        any slice, is a `PollError`; the password never appears in one.
        """

        def page_rows(site: str) -> _PageRows:
            reader = self._reader if self._reader is not None and self._reader.site == site else PageReader(site)
            self._reader = reader
            return reader.rows

        properties = package_status.PROPERTIES if self._property_list else None
        return self._read(package_status.CLASS_NAME, properties, deadline, page_rows, sliced=True)

    def package_info(self, deadline: float) -> Iterator[PackageInfoRow]:
        """Every package of `SMS_PackageBaseclass` (one enumeration: a site has a few thousand)."""
        return self._read(package_info.CLASS_NAME, package_info.PROPERTIES, deadline,
                          _item_rows(package_info.CLASS_NAME, package_info.PROPERTIES,
                                     lambda item, site: package_info.parse_item(item)))

    def dp_content_state(self, deadline: float) -> Iterator[DPContentRow]:
        """Every row of `SMS_PackageStatusDistPointsSummarizer`: as many as the core table, so read in
        PackageID slices at once, as `SMS_PackageStatus` is."""
        return self._read(dp_content_state.CLASS_NAME, dp_content_state.PROPERTIES, deadline,
                          _item_rows(dp_content_state.CLASS_NAME, dp_content_state.PROPERTIES,
                                     dp_content_state.parse_item), sliced=True)

    def dp_info(self, deadline: float) -> Iterator[DPInfoRow]:
        """Every distribution point of `SMS_DistributionPointInfo`."""
        return self._read(dp_info.CLASS_NAME, dp_info.PROPERTIES, deadline,
                          _item_rows(dp_info.CLASS_NAME, dp_info.PROPERTIES, dp_info.parse_item))

    def _read(
        self,
        class_name: str,
        properties: tuple[str, ...] | None,
        deadline: float,
        page_rows: Callable[[str], _PageRows],
        *,
        sliced: bool = False,
    ) -> Iterator[Any]:
        """The rows of one class of the site's namespace, with `properties` (None: `SELECT *`).

        `page_rows(site)` gives what turns a page into rows; `sliced`: several enumerations at
        once over PackageID slices (parallel_enumerations). Replies to a property list are split for
        the fast readers (`exporter.pagerows`).
        """
        try:
            site = self._site_code(deadline)
            rows_of = page_rows(site)
            queries = self._queries(site, class_name, properties, sliced=sliced)
            if len(queries) == 1:
                number = 1
                for page in self._walk(queries[0], deadline):
                    rows = rows_of(page, number)
                    number += len(rows)
                    yield from rows
            else:
                yield from self._parallel(queries, deadline, rows_of)
        except PollError as error:
            scrubbed = self._scrub(str(error.args[0]) if error.args else "")
            if error.args and scrubbed != error.args[0]:
                raise PollError(error.reason, scrubbed, wmi_code=error.wmi_code) from None
            raise

    def _queries(
        self, site: str, class_name: str, properties: tuple[str, ...] | None, *, sliced: bool
    ) -> list[_Query]:
        namespace = site_namespace(site)
        if properties is None:
            return [_Query(namespace, class_name)]
        select = wql_select(class_name, properties)
        predicates = slice_predicates(self._lanes if sliced else 1)
        return [
            _Query(
                namespace,
                class_name,
                select if predicate is None else f"{select} WHERE {predicate}",
                split=True,
                slice="" if predicate is None else f"enumeration {lane + 1} of {len(predicates)} ({predicate})",
                lane=lane,
            )
            for lane, predicate in enumerate(predicates)
        ]

    def _site_code(self, deadline: float) -> str:
        """The configured or discovered site code; the collectors of a poll discover it once."""
        if self._site:
            return self._site
        if not self._discovery.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise PollError("timeout", f"poll deadline reached waiting for the site code of {self._where}")
        try:
            if self._site:
                return self._site
            failure = self._discovery_failure
            if failure is not None and failure[0] == deadline:
                raise failure[1]  # the same poll already asked, and failed
            try:
                return self._discover_site(deadline)
            except PollError as error:
                self._discovery_failure = (deadline, error)
                raise
        finally:
            self._discovery.release()

    # --- the walk ---------------------------------------------------------------------------

    def _walk(
        self, query: _Query, deadline: float, stop: threading.Event | None = None
    ) -> Generator[wsman.RawPage, None, None]:
        """The pages of one enumeration, started again once if it dies mid-walk."""
        restarts_left = 1
        while True:
            try:
                yield from self._pages(query, deadline, stop)
                return
            except _Restart as restart:
                if restarts_left == 0 or time.monotonic() >= deadline:
                    raise restart.error from None
                restarts_left -= 1
                log.warning("restarting the enumeration",
                            extra={"target": self._target.name, "reason": restart.error.reason,
                                   "err": self._scrub(str(restart)),
                                   **({"slice": query.slice} if query.slice else {})})

    def _parallel(self, queries: list[_Query], deadline: float, page_rows: _PageRows) -> Iterator[Any]:
        """The slices' enumerations in threads of their own; their pages read here as they come.

        The threads only send, receive and read envelopes (the network waits overlap); the
        items are read in this thread. A bounded queue keeps memory to a few pages per slice.
        When this generator ends for any reason the threads are stopped, their enumerations
        released, and waited for.
        """
        lanes = _Lanes(queue.Queue(maxsize=PAGES_AHEAD * len(queries)))
        threads = [
            threading.Thread(
                target=self._lane, args=(lane, query, deadline, lanes), daemon=True,
                name=f"enumerate-{self._target.name}-{query.class_name}-{lane + 1}",
            )
            for lane, query in enumerate(queries)
        ]
        for thread in threads:
            thread.start()
        numbers = [1] * len(queries)
        running = len(threads)
        try:
            while running:
                try:
                    lane, item = lanes.pages.get(timeout=max(0.0, deadline - time.monotonic()) + RELEASE_TIMEOUT + 1)
                except queue.Empty:
                    late = f"poll deadline reached reading {queries[0].class_name} ({self._where})"
                    raise PollError("timeout", late) from None
                if item is None:
                    running -= 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                try:
                    rows = page_rows(item, numbers[lane])
                except PollError as error:
                    where = queries[lane].slice
                    raise PollError(error.reason, f"{error.args[0]}, {where}", wmi_code=error.wmi_code) from None
                numbers[lane] += len(rows)
                yield from rows
        finally:
            lanes.stop.set()
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()) + RELEASE_TIMEOUT + 1)

    def _lane(self, lane: int, query: _Query, deadline: float, lanes: _Lanes) -> None:
        """One slice's enumeration, in its own thread: its pages, then None, or its failure."""
        try:
            with closing(self._walk(query, deadline, lanes.stop)) as pages:
                for page in pages:
                    if not lanes.put(lane, page):
                        return  # the consumer is gone; closing the walk releases the context
            lanes.put(lane, None)
        except BaseException as exc:  # handed to the poll's thread, which raises it there
            lanes.put(lane, exc)

    def _discover_site(self, deadline: float) -> str:
        query = _Query(SMS_NAMESPACE, PROVIDER_LOCATION)
        with closing(self._pages(query, deadline)) as pages:
            items = [item for page in pages for item in page.items or []]
        site = _local_site(items, self._target.host or "")
        log.info("site code discovered", extra={"target": self._target.name, "site": site,
                                               "source": f"{SMS_NAMESPACE}\\{PROVIDER_LOCATION}"})
        self._site = site
        return site

    def _pages(
        self, query: _Query, deadline: float, stop: threading.Event | None = None
    ) -> Generator[wsman.RawPage, None, None]:
        """Enumerate, then Pull with the newest context until the end of the sequence.

        `live` holds the context only while this generator waits for its consumer: if the walk
        stops there (consumer gone, deadline, a bad row) the context is released. A context just
        sent in a Pull is not released whatever happened to that Pull: the server consumed it.
        """
        uri = query.uri
        live: str | None = None
        pacing = _Pacing(FIRST_ITEM_BYTES[query.wql is not None])
        try:
            page = self._request(query, deadline, "Enumerate", partial(self._enumerate, uri, query, pacing), pacing)
            while True:
                live = None if page.done else page.context
                yield page
                if live is None or (stop is not None and stop.is_set()):
                    return
                self._check_deadline(deadline, f"Pull of {query.class_name}")
                context, live = live, None
                page = self._request(query, deadline, "Pull", partial(self._pull, uri, context, pacing), pacing)
        finally:
            if live is not None:
                self._release(query.connection, uri, live)

    def _enumerate(self, uri: str, query: _Query, pacing: _Pacing, timeout: float) -> wsman.Envelope:
        return wsman.build_enumerate(to=self._target.endpoint, uri=uri, wql=query.wql, operation_timeout=timeout,
                                     max_elements=pacing.max_elements())

    def _pull(self, uri: str, context: str, pacing: _Pacing, timeout: float) -> wsman.Envelope:
        return wsman.build_pull(to=self._target.endpoint, uri=uri, context=context, operation_timeout=timeout,
                                max_elements=pacing.max_elements())

    def _release(self, connection: _Connection, uri: str, context: str) -> None:
        """Best effort, short: the walk is already over, successful or not."""
        protocol = self._protocols.get(connection)
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
        self,
        query: _Query,
        deadline: float,
        action: str,
        build: Callable[[float], wsman.Envelope],
        pacing: _Pacing | None = None,
    ) -> wsman.RawPage:
        """Send one enumeration request and read its page; faults become `PollError` or `_Restart`."""
        try:
            raw, envelope = self._send(query.connection, build, deadline, f"{action} of {query.class_name}")
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
        limit = self._target.max_response_bytes
        if len(raw) > limit:
            # Refused before parsing: a runaway reply must not cost the memory of its elements.
            raise PollError("parse", f"{action} of {query.class_name}: reply of {len(raw)} bytes is larger than "
                                     f"the limit max_response_bytes {limit}")
        if query.split:
            page = wsman.split_page(raw, message_id=envelope.message_id)
        else:
            parsed = wsman.parse_page(raw, message_id=envelope.message_id)
            page = wsman.RawPage(parsed.context, parsed.end_of_sequence, "", 0, 0, parsed.items)
        items = page.count
        if pacing is not None:
            # The items' share of the reply: all of it but the envelope around them.
            around = len(page.text) - (page.items_end - page.items_start) if page.text else ENVELOPE_GUESS
            pacing.saw(max(len(raw) - around, items), items)
        log.debug("page", extra={"target": self._target.name, "action": action, "class": query.class_name,
                                 "items": items})
        return page

    def _send(
        self, connection: _Connection, build: Callable[[float], wsman.Envelope], deadline: float, what: str
    ) -> tuple[bytes, wsman.Envelope]:
        """One request within the deadline, resent once on a fresh session if the connection dropped.

        Over http with message encryption, a kept-alive connection the server closed makes the
        next request fail (HTTP 400 with no body, or a reset): the sealing context belonged to the
        old connection. A new session authenticates again.
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

    def _connect(self, connection: _Connection) -> Protocol:
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


# What turns one page into rows; the number is that of the page's first row in the walk (messages).
_PageRows = Callable[[wsman.RawPage, int], list[Any]]


def _item_rows(
    class_name: str, properties: tuple[str, ...], parse: Callable[[wsman.Item, str], Any]
) -> Callable[[str], _PageRows]:
    """Rows of a class, each instance by `parse(item, site)`: pages read by `FragmentReader`, or
    by the general parser (`wsman.parse_page`) when they are not in its plain shape."""

    def for_site(site: str) -> _PageRows:
        reader = FragmentReader(properties)

        def page_rows(page: wsman.RawPage, first: int) -> list[Any]:
            items = reader.items(page)
            if items is None:
                items = wsman.parse_page(page.text).items
            rows = []
            for number, item in enumerate(items, first):
                try:
                    rows.append(parse(item, site))
                except RowError as exc:
                    raise PollError("parse", f"{class_name} row {number}: {exc}") from None
            return rows

        return page_rows

    return for_site


def _local_site(items: list[wsman.Item], host: str) -> str:
    """The site code of the provider's own site, from `SMS_ProviderLocation` instances."""
    for item in items:
        local = item_text(item, "ProviderForLocalSite")
        if (local or "").strip().lower() != "true":
            continue
        code = (item_text(item, "SiteCode") or "").strip()
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
