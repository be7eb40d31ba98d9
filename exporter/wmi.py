"""What a source is asked and what it answers: the instances of one WMI class, page by page.

Every source (WinRM, a file exported on Windows, the demo site) answers one question, a `Query`:
the instances of this class, with these properties, in this namespace, maybe filtered by a WHERE
clause and maybe split into slices read at once. It answers with `Page`s of `Item`s (property
name -> text), as they arrive, so that a large class is consumed page by page. What the
properties mean is the collectors' business (`exporter.collectors`): a source never knows which
collector asked. A source raises `PollError` (with its reason) when it cannot answer; a partly
consumed read that raises is a failed read and none of its rows are used.

This module sits below the collectors and the sources, and imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from exporter.errors import PollError

PropertyValue = str | None | list[str | None]
"""A property's text; None for nil (`xsi:nil`); a list when the property is an array."""

Item = dict[str, PropertyValue]
"""One instance: property name -> value."""

@dataclass(frozen=True, slots=True)
class Query:
    """The instances of `class_name` with `properties` (never `SELECT *`: some are lazy and large).

    `namespace` None means the target's site namespace (`root\\SMS\\site_<code>`, the site code
    configured or discovered). `where` filters in WQL. `slice_by` names a property whose last
    character splits the rows into disjoint slices that a source may read at once (PackageID:
    site code + five hex digits, spread evenly); a source that cannot slice reads them whole.
    """

    class_name: str
    properties: tuple[str, ...]
    namespace: str | None = None
    where: str | None = None
    slice_by: str | None = None

    @property
    def wql(self) -> str:
        select = f"SELECT {', '.join(self.properties)} FROM {self.class_name}"
        return select if self.where is None else f"{select} WHERE {self.where}"


# What readers of `WireItems` text accept as plain text. Characters XML 1.0 does not allow in a
# document (besides tab, LF and CR):
NOT_XML = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
# Text that means itself: no reference to decode, no line end to normalise, and no `>`, so that
# no `]]>` (forbidden in text) can hide in it.
PLAIN = f"[^<>&\r{NOT_XML}]*"
WHITESPACE = " \t\r\n"
# Bound on the compiled patterns a reader keeps (one per distinct fragment start tag).
PATTERNS_KEPT = 16


@dataclass(frozen=True, slots=True)
class WireItems:
    """The instances of a WS-Management reply as the server wrote them, for a reader that reads text.

    `text[start:end]` is the content of the reply's `Items` element; `fragment_open` the start
    tag of its first `<w:XmlFragment>`, with which the envelope around was proven to mean what a
    reader of fragments expects (see `exporter.winrm.pages.split_page`).
    """

    text: str
    start: int
    end: int
    fragment_open: str


class Page(Protocol):
    """One page of a read: its instances, and how a message names each of them."""

    @property
    def wire(self) -> WireItems | None:
        """The page's instances as text, when it came off the wire unread; else None."""
        ...

    def items(self) -> list[Item]:
        """Every instance of the page, read."""
        ...

    def name(self, index: int) -> str:
        """How an error message names the page's instance `index` (`SMS_PackageStatus row 61`)."""
        ...


@dataclass(frozen=True, slots=True)
class ItemsPage:
    """A page whose instances are already read (a file, the demo site)."""

    parsed: list[Item]
    names: Callable[[int], str]
    wire: WireItems | None = None

    def items(self) -> list[Item]:
        return self.parsed

    def name(self, index: int) -> str:
        return self.names(index)


class Source(Protocol):
    def read(self, query: Query, deadline: float) -> Iterator[Page]:
        """The instances `query` asks for, page by page. `deadline` is a `time.monotonic()` value
        the read must end by. Rows of a page may come again in a later page (an enumeration
        started over): a reader treats rows with the same key as one."""
        ...

    def site_code(self) -> str | None:
        """The target's own site code once known (configured or discovered), else None."""
        ...

    def close(self) -> None:
        """Drop connections; called when the exporter stops or the target is reconfigured."""
        ...


def row_error(row: str, error: Exception) -> PollError:
    """The one way a row that does not convert fails a read: reason `parse`, naming the row
    (`SMS_PackageStatus row 61`, `/data/status.csv line 5`) and what is wrong with it."""
    return PollError("parse", f"{row}: {error}")
