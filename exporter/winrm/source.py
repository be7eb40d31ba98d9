"""The instances of any class of the SMS Provider over WinRM (WS-Management Enumerate/Pull).

`WinRMSource.read(query, deadline)` answers a `Query` page by page: it finds the site code when
it is not configured (`SMS_ProviderLocation`), plans the enumerations (`plan`: the WQL, the
PackageID slices of a large class), runs them (`lanes`, each on a connection of its own from
`transport`), and hands each reply on as it arrives, never collected first. It copes with what
Windows does on a long walk (docs/troubleshooting.md): contexts that expire and operation
timeouts (the enumeration is started again, once), connections that drop between requests
(`transport`), pages of about 75 KB however large the envelope, a provider that refuses the
slices' WQL (the class is read in one enumeration instead, from then on). Every failure is a
`PollError`; SOAP faults are read by `faults`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import closing
from functools import partial

from winrm.exceptions import WinRMOperationTimeoutError, WSManFaultError

from exporter.capture import Recorder
from exporter.config import TargetConfig
from exporter.errors import PollError
from exporter.rows import item_text
from exporter.winrm import lanes
from exporter.winrm.envelopes import Envelope, build_enumerate, build_pull
from exporter.winrm.faults import WSMAN_OPERATION_TIMEDOUT, fault_error, parse_fault
from exporter.winrm.pages import FragmentReader, RawPage, ReplyPage, parse_page, split_page
from exporter.winrm.plan import (
    ENVELOPE_GUESS,
    FIRST_ITEM_BYTES,
    PROVIDER_LOCATION,
    SMS_NAMESPACE,
    Enumeration,
    Pacing,
    plan,
)
from exporter.winrm.transport import Transport
from exporter.wmi import Item, Page, Query

log = logging.getLogger("exporter.winrm")

_SITE_CODE = re.compile(r"^[A-Za-z0-9]{3}$")


class _Restart(Exception):
    """The enumeration died under us (context expired, operation timed out): start it again.

    Raised inside the walk and caught by `WinRMSource._walk`; a consumer never sees it.
    """

    def __init__(self, error: PollError) -> None:
        super().__init__(str(error))
        self.error = error


class _SliceFault(PollError):
    """A fault on a slice's Enumerate that may be the provider refusing the slice filter
    (`Fault.may_be_the_filter`): worth one enumeration of the class without slices.

    A `PollError` like the one it stands for, so that wherever it is not handled (a page of the
    read was already handed on) it is reported as the fault it is.
    """

    def __init__(self, error: PollError) -> None:
        super().__init__(error.reason, str(error.args[0]), wmi_code=error.wmi_code)


class WinRMSource:
    """The classes of one SMS Provider, read with pywinrm.

    `property_list` (default) asks with the WQL property list of each query (items come as
    `w:XmlFragment`); False enumerates the class URI, i.e. `SELECT *` (`p:<class>` items), in
    one enumeration: what a provider that refused the query could still answer.

    `recorder` (`--record`) is given every request sent and what came back (`exporter.capture`).
    """

    def __init__(self, target: TargetConfig, *, property_list: bool = True, recorder: Recorder | None = None) -> None:
        self._target = target
        self._property_list = property_list
        self._site: str | None = target.site_code
        self._lanes = max(1, target.parallel_enumerations if property_list else 1)
        self._transport = Transport(target, recorder=recorder)
        # Site discovery is shared by the collectors of a poll: the first one asks, the others
        # wait for its answer; a failure is kept for the rest of that poll (same deadline).
        self._discovery = threading.Lock()
        self._discovery_failure: tuple[float, PollError] | None = None
        # Classes (lower case) whose slices the provider refused while it answered the class in
        # one enumeration: read in one from then on. Per class, not per target: each class's WQL
        # becomes SQL over a view of its own, so that one class refusing says nothing sure of
        # another, and a class that takes the slices keeps its faster read; learning it costs a
        # class one refused round of Enumerates. Kept by the source, which lives as long as the
        # target's configuration: a reload that changes the target builds a new source
        # (`Exporter.reload`) and the slices are tried again; an unchanged target keeps it.
        self._unsliced: set[str] = set()
        self._unsliced_lock = threading.Lock()

    def site_code(self) -> str | None:
        return self._site

    def close(self) -> None:
        self._transport.close()

    def read(self, query: Query, deadline: float) -> Iterator[Page]:
        """The instances of `query`, page by page as the pages arrive.

        When the site code is not configured it is first read from `SMS_ProviderLocation` (the
        instance with `ProviderForLocalSite` true) and kept. If an enumeration dies mid-walk (an
        expired or unknown context, an operation timeout) it is started again, once per slice
        and poll: pages already given are then given again, so a read that ends without an
        error has given every instance at least once. If the provider refuses the slices, the
        class is read in one enumeration instead (`_sliced`). Any failure, of any slice, is a
        `PollError`; the password never appears in one.
        """
        try:
            site = self._site_code(deadline) if query.namespace is None else ""
            with self._unsliced_lock:
                count = 1 if query.class_name.lower() in self._unsliced else self._lanes
            enumerations = plan(query, site, lanes=count, property_list=self._property_list)
            reader = FragmentReader(query.properties) if self._property_list else None
            if len(enumerations) == 1:
                yield from self._pages_of(enumerations[0], reader, deadline)
            else:
                yield from self._sliced(query, site, enumerations, reader, deadline)
        except PollError as error:
            scrubbed = self._transport.scrub(str(error.args[0]) if error.args else "")
            if error.args and scrubbed != error.args[0]:
                raise PollError(error.reason, scrubbed, wmi_code=error.wmi_code) from None
            raise

    def _pages_of(
        self, enumeration: Enumeration, reader: FragmentReader | None, deadline: float
    ) -> Generator[Page, None, None]:
        first = 1
        for raw in self._walk(enumeration, deadline):
            yield ReplyPage(raw, reader, enumeration.class_name, first, enumeration.slice)
            first += raw.count

    def _sliced(
        self, query: Query, site: str, enumerations: list[Enumeration], reader: FragmentReader | None,
        deadline: float,
    ) -> Iterator[Page]:
        """The slices' pages; if the provider refused a slice's Enumerate, the class in one
        enumeration instead, in the same read.

        A refusal is any fault on a slice's Enumerate but those the plain query would meet too
        (`Fault.may_be_the_filter`). The slices start together (`lanes.merge`): a refused Enumerate
        fails them before any of their pages was handed on, so the one enumeration gives every
        row exactly once. Once that enumeration is answered the class is remembered as unsliced
        and the log says so, once; if it fails, its own error is the read's, and the slices are
        tried again next poll.
        """
        handed = False
        try:
            with closing(self._parallel(enumerations, reader, deadline)) as pages:
                for page in pages:
                    handed = True
                    yield page
            return
        except _SliceFault as fault:
            if handed:  # a restarted slice refused mid-walk: its rows are half given, fail as usual
                raise
            refused = fault
        (whole,) = plan(query, site, lanes=1, property_list=self._property_list)
        answered = False
        with closing(self._pages_of(whole, reader, deadline)) as pages:
            for page in pages:
                if not answered:
                    answered = True
                    self._unslice(query, refused, len(enumerations))
                yield page

    def _unslice(self, query: Query, refused: PollError, slices: int) -> None:
        """Read `query`'s class in one enumeration from now on; say so once."""
        with self._unsliced_lock:
            if query.class_name.lower() in self._unsliced:
                return
            self._unsliced.add(query.class_name.lower())
        log.warning(
            "sliced enumerations refused; reading the class in one enumeration until the configuration changes",
            extra={"target": self._target.name, "class": query.class_name, "slices": slices,
                   "slice_by": query.slice_by, "reason": refused.reason,
                   "err": self._transport.scrub(str(refused))},
        )

    def _parallel(
        self, enumerations: list[Enumeration], reader: FragmentReader | None, deadline: float
    ) -> Generator[Page, None, None]:
        """The slices' enumerations at once (`lanes`), their pages handed on as they come."""
        firsts = [1] * len(enumerations)
        class_name = enumerations[0].class_name
        walks: list[lanes.Walk[RawPage]] = [
            partial(self._walk, enumeration, deadline) for enumeration in enumerations
        ]

        def late() -> PollError:
            return PollError("timeout", f"poll deadline reached reading {class_name} ({self._transport.where})")

        for lane, raw in lanes.merge(walks, deadline, late, f"enumerate-{self._target.name}-{class_name}"):
            yield ReplyPage(raw, reader, class_name, firsts[lane], enumerations[lane].slice)
            firsts[lane] += raw.count

    # --- the site -------------------------------------------------------------------------

    def _site_code(self, deadline: float) -> str:
        """The configured or discovered site code; the collectors of a poll discover it once."""
        if self._site:
            return self._site
        if not self._discovery.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise PollError("timeout", f"poll deadline reached waiting for the site code of {self._transport.where}")
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

    def _discover_site(self, deadline: float) -> str:
        return self.learn_site(self.provider_locations(deadline))

    def provider_locations(self, deadline: float) -> list[Item]:
        """Every `SMS_ProviderLocation` instance in `root\\SMS`: where each site's provider is."""
        enumeration = Enumeration(SMS_NAMESPACE, PROVIDER_LOCATION)
        with closing(self._pages(enumeration, deadline)) as pages:
            return [item for page in pages for item in page.items or []]

    def learn_site(self, locations: list[Item]) -> str:
        """The local site's code from `provider_locations()`, kept for the reads that follow."""
        site = _local_site(locations, self._target.host or "")
        log.info("site code discovered", extra={"target": self._target.name, "site": site,
                                               "source": f"{SMS_NAMESPACE}\\{PROVIDER_LOCATION}"})
        self._site = site
        return site

    # --- the walk ---------------------------------------------------------------------------

    def _walk(
        self, enumeration: Enumeration, deadline: float, stop: threading.Event | None = None
    ) -> Generator[RawPage, None, None]:
        """The pages of one enumeration, started again once if it dies mid-walk."""
        restarts_left = 1
        while True:
            try:
                yield from self._pages(enumeration, deadline, stop)
                return
            except _Restart as restart:
                if restarts_left == 0 or time.monotonic() >= deadline:
                    raise restart.error from None
                restarts_left -= 1
                log.warning("restarting the enumeration",
                            extra={"target": self._target.name, "reason": restart.error.reason,
                                   "err": self._transport.scrub(str(restart)),
                                   **({"slice": enumeration.slice} if enumeration.slice else {})})

    def _pages(
        self, enumeration: Enumeration, deadline: float, stop: threading.Event | None = None
    ) -> Generator[RawPage, None, None]:
        """Enumerate, then Pull with the newest context until the end of the sequence.

        `live` holds the context only while this generator waits for its consumer: if the walk
        stops there (consumer gone, deadline, a bad row) the context is released. A context just
        sent in a Pull is not released whatever happened to that Pull: the server consumed it.
        """
        uri = enumeration.uri
        live: str | None = None
        pacing = Pacing(FIRST_ITEM_BYTES[enumeration.wql is not None])
        try:
            page = self._request(enumeration, deadline, "Enumerate", partial(self._enumerate, enumeration, pacing),
                                 pacing)
            while True:
                live = None if page.done else page.context
                yield page
                if live is None or (stop is not None and stop.is_set()):
                    return
                self._transport.check_deadline(deadline, f"Pull of {enumeration.class_name}")
                context, live = live, None
                page = self._request(enumeration, deadline, "Pull", partial(self._pull, uri, context, pacing), pacing)
        finally:
            if live is not None:
                self._transport.release(enumeration.connection, uri, live)

    def _enumerate(self, enumeration: Enumeration, pacing: Pacing, timeout: float) -> Envelope:
        return build_enumerate(to=self._target.endpoint, uri=enumeration.uri, wql=enumeration.wql,
                               operation_timeout=timeout, max_elements=pacing.max_elements())

    def _pull(self, uri: str, context: str, pacing: Pacing, timeout: float) -> Envelope:
        return build_pull(to=self._target.endpoint, uri=uri, context=context, operation_timeout=timeout,
                          max_elements=pacing.max_elements())

    def _request(
        self, enumeration: Enumeration, deadline: float, action: str, build: partial[Envelope], pacing: Pacing
    ) -> RawPage:
        """Send one enumeration request and read its page; faults become `PollError` or `_Restart`."""
        what = f"{action} of {enumeration.class_name}"
        try:
            raw, envelope = self._transport.send(enumeration.connection, build, deadline, what)
        except WinRMOperationTimeoutError:
            # pywinrm turns the TimedOut fault (WSManFault 2150858793) into this before we see it.
            error = PollError(
                "timeout",
                f"{what}: the provider did not answer within the operation timeout",
                wmi_code=WSMAN_OPERATION_TIMEDOUT,
            )
            raise _Restart(error) from None
        except WSManFaultError as exc:
            fault = parse_fault(exc.response)
            error = fault_error(fault, namespace=enumeration.namespace, class_name=enumeration.class_name)
            if fault.restartable:
                raise _Restart(error) from None
            if enumeration.slice and action == "Enumerate" and fault.may_be_the_filter:
                raise _SliceFault(error) from None
            raise error from None
        limit = self._target.max_response_bytes
        if len(raw) > limit:
            # Refused before parsing: a runaway reply must not cost the memory of its elements.
            raise PollError("parse", f"{what}: reply of {len(raw)} bytes is larger than "
                                     f"the limit max_response_bytes {limit}")
        reply = (split_page if enumeration.split else parse_page)(raw, message_id=envelope.message_id)
        items = reply.count
        # The items' share of the reply: all of it but the envelope around them.
        around = len(reply.text) - (reply.items_end - reply.items_start) if reply.text else ENVELOPE_GUESS
        pacing.saw(max(len(raw) - around, items), items)
        log.debug("page", extra={"target": self._target.name, "action": action, "class": enumeration.class_name,
                                 "items": items})
        return reply


def _local_site(items: list[Item], host: str) -> str:
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
