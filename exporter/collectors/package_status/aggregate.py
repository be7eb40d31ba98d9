"""`SMS_PackageStatus` rows -> the core families (docs/metrics.md), counted page by page.

A poll's rows stream in page by page (`PackageStatusAggregate.add`) and are de-duplicated and
counted as they come, so that memory holds what the families need, not the rows: per group of
(site, server, type, status, personality) the set of its packages' ids, and the update times of
the rows exported one by one. `render` then writes each family's sample lines once, as UTF-8 and
as splice-ready deflate (`exporter.gzipsplice`), and the result is kept until the next poll: a
scrape only sends finished bytes (see `exposition.py`), so its cost grows with nothing but what
it sends.
Rendering is a pure function of the rows, tested against `prometheus_client`'s own exposition.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping

from exporter.collectors.package_status.row import (
    KNOWN_STATUSES,
    PERSONALITY_NAMES,
    STATUS_INSTALLED,
    STATUS_NAMES,
    TYPE_COPY,
    TYPE_NAMES,
    PackageStatusRow,
)
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
from exporter.rows import enum_label

PACKAGE_STATUS = Family(
    "sccm_package_status",
    "gauge",
    "One series per SMS_PackageStatus row, value 1; labels are the row's key "
    "(SiteCode, PackageID, PkgServer host, Type, Status, Personality).",
)
UPDATE_TIMESTAMP = Family(
    "sccm_package_status_update_timestamp_seconds",
    "gauge",
    "SMS_PackageStatus.UpdateTime of the row as Unix seconds UTC (MASTER: copy created or merged; "
    "COPY: distribution point updated); rows whose UpdateTime is nil are left out.",
)
STATUS_ROWS = Family(
    "sccm_package_status_rows",
    "gauge",
    "Number of SMS_PackageStatus rows with this SiteCode, Type and Status; every known status is "
    "present, 0 where there is none.",
)
SERVER_STATUS_ROWS = Family(
    "sccm_server_package_status_rows",
    "gauge",
    "Number of COPY rows of SMS_PackageStatus on this distribution point with this Status; every "
    "known status is present per server.",
)
PACKAGE_SERVERS = Family(
    "sccm_package_status_servers",
    "gauge",
    "Number of distribution points holding this package with this Status (COPY rows of "
    "SMS_PackageStatus); every known status is present per package.",
)

FAMILIES: tuple[Family, ...] = (
    PACKAGE_STATUS,
    UPDATE_TIMESTAMP,
    STATUS_ROWS,
    SERVER_STATUS_ROWS,
    PACKAGE_SERVERS,
)



# Ids of groups in the integer key of a kept row (package id << _GROUP_BITS | group id).
_GROUP_BITS = 24

_Group = tuple[str, int, int, int]  # server, type, status, personality: the rest of a row's key


class PackageStatusAggregate:
    """What one poll's rows add up to, fed page by page; `render` turns it into an `Exposition`.

    Rows are counted into groups, one per distinct (site, server, type, status, personality): a
    few thousand on a large site. A group holds the set of the ids of its rows' packages, ids
    given in order of first sight and shared with the package table, so that a million rows
    cost a million set entries of shared small integers, nothing per row. Adding a package
    already in its group's set changes nothing: rows with the same key are one row, as a
    restarted enumeration yields rows again and the text format does not allow a series twice.
    The update times of the rows exported one by one (`per_row`) are kept by key, the last one
    winning.
    """

    def __init__(self, per_row: PerRow) -> None:
        self._per_row = per_row
        self._by_site: dict[str, dict[_Group, int]] = {}  # site -> group -> group id
        self._groups: list[tuple[str, _Group]] = []  # by group id: (site, group)
        self._members: list[set[int]] = []  # by group id: package ids
        self._keep: list[bool] = []  # by group id: its rows are exported one by one
        self._packages: dict[str, int] = {}  # package id text -> id
        self._kept: dict[int, float | None] = {}  # package id << _GROUP_BITS | group id -> update time

    @property
    def rows(self) -> int:
        return sum(map(len, self._members))

    def add(self, rows: Iterable[PackageStatusRow]) -> None:
        """Count `rows` in. The hot loop of a poll: a few lookups per row, everything local."""
        by_site, members, keep, packages, kept = self._by_site, self._members, self._keep, self._packages, self._kept
        for row in rows:
            groups = by_site.get(row[0])
            if groups is None:
                groups = by_site[row[0]] = {}
            group = groups.get(row[2:6])
            if group is None:
                group = self._new_group(row, groups)
            package = packages.get(row[1])
            if package is None:
                package = packages[row[1]] = len(packages)
            members[group].add(package)
            if keep[group]:
                kept[package << _GROUP_BITS | group] = row[6]

    def _new_group(self, row: PackageStatusRow, groups: dict[_Group, int]) -> int:
        number = len(self._groups)
        if number >= 1 << _GROUP_BITS:
            limit = 1 << _GROUP_BITS
            raise PollError("other", f"more than {limit} distinct sites, servers and statuses: not supported")
        key: _Group = (row.server, row.type, row.status, row.personality)
        groups[key] = number
        self._groups.append((row.site, key))
        self._members.append(set())
        self._keep.append(exported_one_by_one(self._per_row, row.status == STATUS_INSTALLED))
        return number

    # --- render -------------------------------------------------------------------------------

    def render(self, target: str, own_site: str | None = None) -> Exposition:
        """Every data family of one target.

        `own_site` is the target's site code: its status counts are present (all zero) even when
        the site has no rows, so that a dashboard shows 0, not "no data".
        """
        esc = cached(escape_label_value)
        t = esc(target)
        per_row, timestamps = self._render_per_row(t, esc)
        families = {
            PACKAGE_STATUS.name: per_row,
            UPDATE_TIMESTAMP.name: timestamps,
            STATUS_ROWS.name: lines_piece(self._status_rows(t, esc, own_site)),
            SERVER_STATUS_ROWS.name: lines_piece(self._server_rows(t, esc)),
            PACKAGE_SERVERS.name: lines_piece(self._package_servers(t, esc)),
        }
        return Exposition.of(families, self.rows)

    def _render_per_row(self, t: str, esc: Callable[[str], str]) -> tuple[Piece, Piece]:
        status_name, timestamp_name = PACKAGE_STATUS.name, UPDATE_TIMESTAMP.name
        # Line text around the package: `name{target=..,site=..` + `,package_id=..` + `,server=..,type=..}`
        sites = [f'{{target="{t}",site="{esc(site)}"' for site, _ in self._groups]
        status_heads = [f"{status_name}{site}" for site in sites]
        timestamp_heads = [f"{timestamp_name}{site}" for site in sites]
        tails = [
            f',server="{esc(server)}",type="{esc(enum_label(type_, TYPE_NAMES))}",'
            f'status="{esc(enum_label(status, STATUS_NAMES))}",'
            f'personality="{esc(enum_label(personality, PERSONALITY_NAMES))}"}}'
            for _, (server, type_, status, personality) in self._groups
        ]
        packages = [f',package_id="{esc(package)}"' for package in self._packages]
        mask = (1 << _GROUP_BITS) - 1
        status_chunks: list[bytes] = []
        timestamp_chunks: list[bytes] = []
        status_lines: list[str] = []
        timestamp_lines: list[str] = []
        add_status, add_timestamp = status_lines.append, timestamp_lines.append
        for key, update_time in self._kept.items():
            group = key & mask
            package = packages[key >> _GROUP_BITS]
            tail = tails[group]
            add_status(f"{status_heads[group]}{package}{tail} 1\n")
            if update_time is not None:
                value = repr(update_time)
                if value.endswith(".0"):  # a whole second: written as Prometheus writes integers
                    value = format_value(update_time)
                add_timestamp(f"{timestamp_heads[group]}{package}{tail} {value}\n")
            if len(status_lines) >= CHUNK_LINES:
                status_chunks.append("".join(status_lines).encode())
                status_lines.clear()
                timestamp_chunks.append("".join(timestamp_lines).encode())
                timestamp_lines.clear()
        status_chunks.append("".join(status_lines).encode())
        timestamp_chunks.append("".join(timestamp_lines).encode())
        return piece(status_chunks), piece(timestamp_chunks)

    def _status_rows(self, t: str, esc: Callable[[str], str], own_site: str | None) -> Iterator[str]:
        counts: dict[str, dict[int, dict[int, int]]] = {}  # site -> type -> status -> rows
        for (site, (_, type_, status, _)), members in zip(self._groups, self._members, strict=True):
            by_status = counts.setdefault(site, {}).setdefault(type_, {})
            by_status[status] = by_status.get(status, 0) + len(members)
        sites = dict.fromkeys([own_site] if own_site else [])
        sites.update(dict.fromkeys(self._by_site))
        for site in sites:
            by_type = counts.get(site, {})
            for type_ in dict.fromkeys([*TYPE_NAMES, *by_type]):
                type_label = esc(enum_label(type_, TYPE_NAMES))
                for status, rows in _complete_statuses(by_type.get(type_, {})):
                    yield (
                        f'{STATUS_ROWS.name}{{target="{t}",site="{esc(site)}",type="{type_label}",'
                        f'status="{esc(enum_label(status, STATUS_NAMES))}"}} {rows}\n'
                    )

    def _server_rows(self, t: str, esc: Callable[[str], str]) -> Iterator[str]:
        counts: dict[tuple[str, str], dict[int, int]] = {}  # (site, server) -> status -> COPY rows
        for (site, (server, type_, status, _)), members in zip(self._groups, self._members, strict=True):
            if type_ == TYPE_COPY:
                by_status = counts.setdefault((site, server), {})
                by_status[status] = by_status.get(status, 0) + len(members)
        for (site, server), by_status in counts.items():
            prefix = f'{SERVER_STATUS_ROWS.name}{{target="{t}",site="{esc(site)}",server="{esc(server)}"'
            for status, rows in _complete_statuses(by_status):
                yield f'{prefix},status="{esc(enum_label(status, STATUS_NAMES))}"}} {rows}\n'

    def _package_servers(self, t: str, esc: Callable[[str], str]) -> Iterator[str]:
        """Distribution points per (site, package, status): distinct servers of COPY rows.

        Two rows of one server differing only in Personality are one server holding the package:
        the groups of one (site, server, status) are merged before counting.
        """
        holders: dict[tuple[str, str, int], list[set[int]]] = {}
        packages_of_site: dict[str, set[int]] = {}
        for (site, (server, type_, status, _)), members in zip(self._groups, self._members, strict=True):
            packages_of_site.setdefault(site, set()).update(members)
            if type_ == TYPE_COPY:
                holders.setdefault((site, server, status), []).append(members)
        counts: dict[tuple[str, int], Counter[int]] = {}  # (site, status) -> package id -> servers
        for (site, _, status), sets in holders.items():
            counted = counts.setdefault((site, status), Counter())
            counted.update(sets[0] if len(sets) == 1 else set().union(*sets))
        names = list(self._packages)
        statuses = {site: [(status, counted) for (s, status), counted in counts.items() if s == site]
                    for site in packages_of_site}
        for site, packages in packages_of_site.items():
            head = f'{PACKAGE_SERVERS.name}{{target="{t}",site="{esc(site)}",package_id="'
            by_status = statuses[site]
            for package in sorted(packages):
                found = {status: counted[package] for status, counted in by_status if package in counted}
                prefix = f"{head}{esc(names[package])}"
                for status, servers in _complete_statuses(found):
                    yield f'{prefix}",status="{esc(enum_label(status, STATUS_NAMES))}"}} {servers}\n'


def _complete_statuses(by_status: Mapping[int, int]) -> Iterator[tuple[int, int]]:
    return complete(by_status, KNOWN_STATUSES)
