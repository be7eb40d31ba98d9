"""What a collector is, and how its classes are read from a source into rows.

A collector is a `CollectorSpec`: its name, the classes it reads (`ClassRead`: a `Query` and how
an instance becomes a row), its families and its aggregate. Everything particular to a class
lives in the collector's own module; this module only says how any of them is read, so that the
poller, the sources and the configuration never name a collector or a class.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from exporter.families import Exposition, Family, PerRow
from exporter.rows import RowError
from exporter.wmi import Item, Page, Query, Source, WireItems, row_error


class Aggregate(Protocol):
    """One poll's rows of a collector, counted in page by page; rendered once at the end."""

    @property
    def rows(self) -> int: ...

    def add(self, rows: Iterable[Any]) -> None: ...

    def render(self, target: str, own_site: str | None) -> Exposition: ...


R = TypeVar("R")


class LastRows(Generic[R]):
    """An aggregate of a small class: its rows by `key`, a repeated key keeping its last row (a
    restarted enumeration gives rows again). Subclasses give `key` and `render`.

    `per_row` limits the per-row families of the large classes only: a few thousand rows are all
    exported.
    """

    def __init__(self, per_row: PerRow = "all") -> None:
        self.kept: dict[Hashable, R] = {}

    @staticmethod
    def key(row: R) -> Hashable:
        raise NotImplementedError

    @property
    def rows(self) -> int:
        return len(self.kept)

    def add(self, rows: Iterable[R]) -> None:
        kept, key = self.kept, self.key
        for row in rows:
            kept[key(row)] = row


class WireReader(Protocol):
    """A collector's own reader of a page's text, faster than reading items one by one.

    `rows` gives the page's rows, or None when the text is not in the shape it reads: the items
    are then read and converted one by one, which either gives the same rows or says what is wrong.
    """

    def rows(self, wire: WireItems) -> list[Any] | None: ...


@dataclass(frozen=True)
class ClassRead:
    """One class a collector reads: what to ask for, and how an instance becomes a row.

    `parse_item(item, site)` converts one instance (`site`, the target's site code, stands in
    where the class has none) and raises `RowError` when it cannot. `wire_reader(site)`, when
    given, makes a faster reader of whole pages; it is kept from poll to poll (it may remember
    what repeats) and made again when the site code changes.
    """

    query: Query
    parse_item: Callable[[Item, str], Any]
    wire_reader: Callable[[str], WireReader] | None = None


@dataclass(frozen=True)
class CollectorSpec:
    """A collector: `core` marks the one `sccm_up` follows (it always runs); `default` ones run
    unless the configuration's `collectors:` list leaves them out."""

    name: str
    reads: tuple[ClassRead, ...]
    families: tuple[Family, ...]
    aggregate: Callable[[PerRow], Aggregate]
    default: bool = False
    core: bool = False

    @property
    def classes(self) -> str:
        """Its classes, for messages: `SMS_DistributionPointGroup and SMS_DPGroupMembers`."""
        return " and ".join(read.query.class_name for read in self.reads)


class Reader:
    """Reads one collector's classes from one target's source, poll after poll.

    Not shared between threads: a target reads a collector once at a time.
    """

    def __init__(self, spec: CollectorSpec) -> None:
        self.spec = spec
        self._wire: dict[int, tuple[str, WireReader]] = {}  # by class: the site and its reader

    def rows(self, source: Source, deadline: float) -> Iterator[Any]:
        """The rows of every class of the collector, in order, as their pages arrive."""
        for number, read in enumerate(self.spec.reads):
            yield from self._rows(number, read, source, deadline)

    def _rows(self, number: int, read: ClassRead, source: Source, deadline: float) -> Iterator[Any]:
        site: str | None = None
        wire_reader: WireReader | None = None
        for page in source.read(read.query, deadline):
            if site is None:  # known once the source answered: configured or discovered
                site = source.site_code() or ""
                wire_reader = self._wire_reader(number, read, site)
            yield from page_rows(page, read.parse_item, site, wire_reader)

    def _wire_reader(self, number: int, read: ClassRead, site: str) -> WireReader | None:
        if read.wire_reader is None:
            return None
        kept = self._wire.get(number)
        if kept is None or kept[0] != site:
            kept = self._wire[number] = (site, read.wire_reader(site))
        return kept[1]


def page_rows(
    page: Page, parse_item: Callable[[Item, str], Any], site: str, wire_reader: WireReader | None = None
) -> list[Any]:
    """The rows of one page: by the collector's own reader when it can, else instance by instance."""
    wire = page.wire
    if wire_reader is not None and wire is not None:
        rows = wire_reader.rows(wire)
        if rows is not None:
            return rows
    result = []
    for index, item in enumerate(page.items()):
        try:
            result.append(parse_item(item, site))
        except RowError as error:
            raise row_error(page.name(index), error) from None
    return result
