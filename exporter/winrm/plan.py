"""What to enumerate for a `Query`: namespaces, WQL, PackageID slices, and how many items to ask for.

A large site is thousands of round trips. To hide their latency, a query that may be sliced is
read by `parallel_enumerations` enumerations at once, each over a disjoint slice of the rows
chosen by the last character of its `slice_by` property (PackageID: site code + five hex digits,
which spreads rows evenly). `MaxElements` is chosen so that that many items fill the envelope
without overflowing it (`Pacing`).
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.winrm.envelopes import MAX_ELEMENTS, MAX_ENVELOPE_SIZE, resource_uri
from exporter.wmi import Query

SMS_NAMESPACE = "root\\SMS"
PROVIDER_LOCATION = "SMS_ProviderLocation"
# The last characters of PackageIDs (site code + 5 hex digits), dealt out to the slices.
SLICE_CHARACTERS = "0123456789ABCDEF"
# MaxElements is chosen so that that many items fill MaxEnvelopeSize without exceeding it: from a
# guess per item before the first page, then from the largest bytes per item seen so far. The
# margin covers items longer than the average (a long PkgServer) and the envelope around them.
FIRST_ITEM_BYTES = {True: 1024, False: 2048}  # property list, SELECT *
ENVELOPE_RESERVE = 4096
ENVELOPE_GUESS = 1500  # bytes of a reply around its items (header, context), when not measured
ITEM_MARGIN = 1.25


def site_namespace(site_code: str) -> str:
    """The SMS Provider namespace of a site: `root\\SMS\\site_ABC`."""
    return f"{SMS_NAMESPACE}\\site_{site_code}"


def slice_predicates(parallel: int, prop: str = "PackageID") -> list[str | None]:
    """WQL conditions on `prop` that split the rows into `parallel` disjoint slices covering all.

    Each but the last slice takes some last characters (`PackageID LIKE '%[0123]'`); the last
    takes every other character and the empty value (`LIKE '%[^0123456789AB]' OR PackageID = ''`),
    so that every row is in exactly one slice whatever its value. Sets of characters without
    ranges mean the same to WMI's WQL and to the SQL the SMS Provider turns it into; LIKE ignores
    case.
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
    predicates: list[str | None] = [f"{prop} LIKE '%[{chars}]'" for chars in sets[:-1]]
    predicates.append(f"{prop} LIKE '%[^{''.join(sets[:-1])}]' OR {prop} = ''")
    return predicates


@dataclass(frozen=True, slots=True)
class Enumeration:
    """One enumeration to run: where, what (the WQL, or None for the class URI: `SELECT *`), and
    on which connection.

    `split`: replies are taken apart by `pages.split_page` for the fast readers, instead of being
    parsed whole. `slice` names the slice in messages, when there are several; `lane` is which of
    the query's enumerations it is: each has a connection of its own.
    """

    namespace: str
    class_name: str
    wql: str | None = None
    properties: tuple[str, ...] = ()
    split: bool = False
    slice: str = ""
    lane: int = 0

    @property
    def uri(self) -> str:
        return resource_uri(self.namespace, None if self.wql else self.class_name)

    @property
    def connection(self) -> Connection:
        return (self.class_name, self.lane)


# A connection is named by the class it reads and its lane: the collectors of a poll read their
# classes at once, and a pywinrm Protocol (one HTTP session) serves one request at a time.
Connection = tuple[str, int]


def plan(query: Query, site: str, *, lanes: int, property_list: bool = True) -> list[Enumeration]:
    """The enumerations that read `query` in the site's namespace (or the query's own).

    Without `property_list` the class URI is enumerated (`SELECT *`, one enumeration); with it,
    the WQL of the query, in `lanes` slices when the query may be sliced.
    """
    namespace = query.namespace or site_namespace(site)
    if not property_list:
        return [Enumeration(namespace, query.class_name)]
    predicates = slice_predicates(lanes, query.slice_by) if query.slice_by else [None]
    enumerations = []
    for lane, predicate in enumerate(predicates):
        parts = [part for part in (query.where, predicate) if part]
        where = " AND ".join(f"({part})" for part in parts) if len(parts) > 1 else (parts[0] if parts else None)
        sliced = Query(query.class_name, query.properties, namespace, where)
        label = "" if predicate is None else f"enumeration {lane + 1} of {len(predicates)} ({predicate})"
        enumerations.append(
            Enumeration(namespace, query.class_name, sliced.wql, query.properties, split=True, slice=label, lane=lane)
        )
    return enumerations


@dataclass
class Pacing:
    """MaxElements for the next request of one enumeration (see FIRST_ITEM_BYTES)."""

    item_bytes: float  # the guess, until a page with items came back
    most: float = 0.0  # the largest bytes per item of a page so far, with the margin

    def max_elements(self) -> int:
        per_item = self.most or self.item_bytes
        return max(1, min(MAX_ELEMENTS, int((MAX_ENVELOPE_SIZE - ENVELOPE_RESERVE) / per_item)))

    def saw(self, size: int, items: int) -> None:
        """A page came back holding `items` instances in `size` bytes."""
        if items:
            self.most = max(self.most, size * ITEM_MARGIN / items)
