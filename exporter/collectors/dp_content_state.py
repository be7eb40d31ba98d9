"""The `dp_content_state` collector: each package's state on each DP, as the console shows it.

`SMS_PackageStatusDistPointsSummarizer` is what the console's Content Status and Distribution
Point views are built from: one instance per package per distribution point, with the state
Distribution Manager summarised from `SMS_PackageStatus` (installed, install pending, retrying,
failed, removal..., content updating or monitoring). It has as many rows as the core table, so
it is off by default; `per_row` limits its per-row families as it limits the core ones, and the
counts per DP and state are always complete.

Rows are counted in as they stream, as `package_status` does: per (site, server) pair and state a
group id, and per (package, pair) the group of its last row, so that a row read twice (a
restarted enumeration) or in two states (it changed between the two reads) is one row, the last.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from exporter.collectors.spec import ClassRead, CollectorSpec
from exporter.errors import PollError
from exporter.families import (
    CHUNK_LINES,
    Exposition,
    Family,
    PerRow,
    cached,
    complete,
    escape_label_value,
    exported_one_by_one,
    format_value,
    lines_piece,
)
from exporter.gzipsplice import Piece, piece
from exporter.rows import RowError, enum_label, host_from_nal, item_text, parse_datetime, parse_int
from exporter.wmi import Item, Query

CLASS_NAME = "SMS_PackageStatusDistPointsSummarizer"
PROPERTIES = ("PackageID", "ServerNALPath", "SiteCode", "State", "LastCopied")
# As many rows as the core table: read in the same PackageID slices at once.
QUERY = Query(CLASS_NAME, PROPERTIES, slice_by="PackageID")

STATE_NAMES: dict[int, str] = {
    0: "installed",
    1: "install_pending",
    2: "install_retrying",
    3: "install_failed",
    4: "removal_pending",
    5: "removal_retrying",
    6: "removal_failed",
    7: "content_updating",
    8: "content_monitoring",
}
STATE_INSTALLED = 0

CONTENT_STATE = Family(
    "sccm_dp_content_state",
    "gauge",
    "One series per SMS_PackageStatusDistPointsSummarizer row (a package on a distribution point), "
    "value 1; state is the console's content state of the package there.",
)
STATE_PACKAGES = Family(
    "sccm_dp_content_state_packages",
    "gauge",
    "Packages on this distribution point in this content state (SMS_PackageStatusDistPointsSummarizer); "
    "every known state is present per distribution point, 0 where none.",
)
LAST_COPIED = Family(
    "sccm_dp_content_last_copied_timestamp_seconds",
    "gauge",
    "SMS_PackageStatusDistPointsSummarizer.LastCopied as Unix seconds UTC: when the package's content "
    "was last copied to the distribution point; rows whose LastCopied is nil are left out.",
)
FAMILIES: tuple[Family, ...] = (CONTENT_STATE, STATE_PACKAGES, LAST_COPIED)


class DPContentRow(NamedTuple):
    """One `SMS_PackageStatusDistPointsSummarizer` instance, as far as the families use it."""

    site: str
    package_id: str
    server: str
    state: int
    last_copied: float | None = None  # Unix seconds UTC


def parse_item(item: Item, site: str) -> DPContentRow:
    """The row of one instance; `site` stands in for a missing SiteCode."""
    package_id = (item_text(item, "PackageID") or "").strip()
    if not package_id:
        raise RowError("PackageID is missing")
    nal = item_text(item, "ServerNALPath")
    if nal is None or not nal.strip():
        raise RowError("ServerNALPath is missing")
    state = parse_int("State", item_text(item, "State"))
    if state is None:
        raise RowError("State is missing")
    return DPContentRow(
        site=sys.intern((item_text(item, "SiteCode") or "").strip() or site),
        package_id=sys.intern(package_id),
        server=sys.intern(host_from_nal(nal)),
        state=state,
        last_copied=parse_datetime(item_text(item, "LastCopied"), "LastCopied"),
    )


# Ids of (site, server) pairs in the integer key of a row (package id << _PAIR_BITS | pair id).
_PAIR_BITS = 24


class DPContentAggregate:
    """What one poll's rows add up to, fed page by page; `render` turns it into an `Exposition`."""

    def __init__(self, per_row: PerRow) -> None:
        self._per_row = per_row
        self._pairs: dict[tuple[str, str], int] = {}  # (site, server) -> pair id
        self._groups: dict[tuple[int, int], int] = {}  # (pair id, state) -> group id
        self._group_keys: list[tuple[int, int]] = []  # by group id: (pair id, state)
        self._keep: list[bool] = []  # by group id: its rows are exported one by one (per_row)
        self._packages: dict[str, int] = {}  # package id text -> id
        self._rows: dict[int, int] = {}  # package id << _PAIR_BITS | pair id -> group id of its last row
        self._copied: dict[int, float] = {}  # same key -> LastCopied of rows exported one by one

    @property
    def rows(self) -> int:
        return len(self._rows)

    def add(self, rows: Iterable[DPContentRow]) -> None:
        """Count `rows` in; a row whose package and DP were seen before replaces the earlier one."""
        pairs, groups, packages, kept, copied = self._pairs, self._groups, self._packages, self._rows, self._copied
        keep = self._keep
        for site, package_id, server, state, last_copied in rows:
            pair = pairs.get((site, server))
            if pair is None:
                pair = self._new_pair(site, server)
            group = groups.get((pair, state))
            if group is None:
                group = groups[(pair, state)] = len(self._group_keys)
                self._group_keys.append((pair, state))
                keep.append(exported_one_by_one(self._per_row, state == STATE_INSTALLED))
            package = packages.get(package_id)
            if package is None:
                package = packages[package_id] = len(packages)
            key = package << _PAIR_BITS | pair
            kept[key] = group
            if last_copied is not None and keep[group]:
                copied[key] = last_copied
            else:
                copied.pop(key, None)

    def _new_pair(self, site: str, server: str) -> int:
        number = len(self._pairs)
        if number >= 1 << _PAIR_BITS:
            raise PollError("other", f"more than {1 << _PAIR_BITS} distinct sites and servers: not supported")
        self._pairs[(site, server)] = number
        return number

    # --- render -------------------------------------------------------------------------------

    def render(self, target: str, own_site: str | None = None) -> Exposition:
        esc = cached(escape_label_value)
        t = esc(target)
        pairs = [f'{{target="{t}",site="{esc(site)}"' for site, _ in self._pairs]
        servers = [f',server="{esc(server)}"' for _, server in self._pairs]
        families = {
            CONTENT_STATE.name: self._per_row_states(pairs, servers, esc),
            STATE_PACKAGES.name: lines_piece(self._counts(pairs, servers, esc)),
            LAST_COPIED.name: lines_piece(self._last_copied(pairs, servers, esc)),
        }
        return Exposition.of(families, self.rows)

    def _per_row_states(self, pairs: list[str], servers: list[str], esc: Callable[[str], str]) -> Piece:
        if self._per_row == "none":
            return piece([b""])
        heads = [f'{CONTENT_STATE.name}{pairs[pair]}' for pair, _ in self._group_keys]
        tails = [
            f'{servers[pair]},state="{esc(enum_label(state, STATE_NAMES))}"}} 1\n' for pair, state in self._group_keys
        ]
        packages = [f',package_id="{esc(package)}"' for package in self._packages]
        keep = self._keep
        chunks: list[bytes] = []
        lines: list[str] = []
        for key, group in self._rows.items():
            if keep[group]:
                lines.append(f"{heads[group]}{packages[key >> _PAIR_BITS]}{tails[group]}")
                if len(lines) >= CHUNK_LINES:
                    chunks.append("".join(lines).encode())
                    lines.clear()
        chunks.append("".join(lines).encode())
        return piece(chunks)

    def _counts(self, pairs: list[str], servers: list[str], esc: Callable[[str], str]) -> Iterator[str]:
        by_group = Counter(self._rows.values())
        by_pair: dict[int, dict[int, int]] = {pair: {} for pair in range(len(self._pairs))}
        for group, (pair, state) in enumerate(self._group_keys):
            if by_group[group]:
                by_pair[pair][state] = by_group[group]
        for pair, by_state in by_pair.items():
            head = f"{STATE_PACKAGES.name}{pairs[pair]}{servers[pair]}"
            for state, packages in complete(by_state, STATE_NAMES):
                yield f'{head},state="{esc(enum_label(state, STATE_NAMES))}"}} {packages}\n'

    def _last_copied(self, pairs: list[str], servers: list[str], esc: Callable[[str], str]) -> Iterator[str]:
        packages = list(self._packages)
        mask = (1 << _PAIR_BITS) - 1
        for key, when in self._copied.items():
            pair = key & mask
            yield (
                f'{LAST_COPIED.name}{pairs[pair]},package_id="{esc(packages[key >> _PAIR_BITS])}"{servers[pair]}}} '
                f"{format_value(when)}\n"
            )


SPEC = CollectorSpec("dp_content_state", (ClassRead(QUERY, parse_item),), FAMILIES, DPContentAggregate)
