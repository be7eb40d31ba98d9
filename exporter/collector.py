"""Rows -> the metric families of design.md, rendered once per poll.

A poll's rows are turned into exposition text here, in the background, and the result is kept
until the next poll: a scrape only joins finished strings (see `exposition.py`), so its cost does
not grow with the size of the site. Rendering is a pure function of the rows, tested against
`prometheus_client`'s own parser.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exporter.config import PerRow
from exporter.rows import (
    PERSONALITY_NAMES,
    STATUS_INSTALLED,
    STATUS_NAMES,
    TYPE_COPY,
    TYPE_NAMES,
    PackageStatusRow,
    enum_label,
)


@dataclass(frozen=True)
class Family:
    name: str
    type: str
    help: str

    def header(self) -> str:
        return f"# HELP {self.name} {escape_help(self.help)}\n# TYPE {self.name} {self.type}\n"


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

# The order in which data families appear in /metrics.
DATA_FAMILIES: tuple[Family, ...] = (
    PACKAGE_STATUS,
    UPDATE_TIMESTAMP,
    STATUS_ROWS,
    SERVER_STATUS_ROWS,
    PACKAGE_SERVERS,
)

KNOWN_STATUSES: tuple[int, ...] = tuple(STATUS_NAMES)


def escape_label_value(value: str) -> str:
    """Escape a label value for the text exposition format (backslash, double quote, newline)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: integers without a fraction, floats round-trip exact."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True)
class Exposition:
    """The sample lines of one target's data families, keyed by family name.

    Built once per poll by `render_rows`; HELP and TYPE lines are added when targets are joined,
    so that several targets share one header per family.
    """

    samples: dict[str, str]
    rows: int  # distinct rows after de-duplication
    series: int


def _cached(fn: Callable[[str], str]) -> Callable[[str], str]:
    """Memoise an escaping function over one render: a site repeats a few thousand strings."""
    cache: dict[str, str] = {}

    def lookup(value: str) -> str:
        found = cache.get(value)
        if found is None:
            found = cache[value] = fn(value)
        return found

    return lookup


def dedupe(rows: Iterable[PackageStatusRow]) -> list[PackageStatusRow]:
    """One row per key (site, package, server, type, status, personality), the last one winning.

    A restarted enumeration or a duplicated instance would otherwise yield duplicate series,
    which Prometheus rejects.
    """
    unique: dict[tuple[str, str, str, int, int, int], PackageStatusRow] = {}
    for row in rows:
        unique[row.key] = row
    return list(unique.values())


def keep_row(per_row: PerRow) -> Callable[[PackageStatusRow], bool]:
    if per_row == "all":
        return lambda row: True
    if per_row == "not_installed":
        return lambda row: row.status != STATUS_INSTALLED
    return lambda row: False


def render_rows(
    target: str, rows: Iterable[PackageStatusRow], per_row: PerRow, own_site: str | None = None
) -> Exposition:
    """Render every data family of one target from its rows.

    `own_site` is the target's site code: its status counts are present (all zero) even when the
    site has no rows, so that a dashboard shows 0, not "no data".
    """
    unique = dedupe(rows)
    esc = _cached(escape_label_value)
    t = esc(target)
    per_row_lines, timestamp_lines = _render_per_row(t, esc, unique, keep_row(per_row))
    status_lines = _render_status_rows(t, esc, unique, own_site)
    server_lines = _render_server_rows(t, esc, unique)
    package_lines = _render_package_servers(t, esc, unique)
    families = {
        PACKAGE_STATUS.name: per_row_lines,
        UPDATE_TIMESTAMP.name: timestamp_lines,
        STATUS_ROWS.name: status_lines,
        SERVER_STATUS_ROWS.name: server_lines,
        PACKAGE_SERVERS.name: package_lines,
    }
    series = sum(len(lines) for lines in families.values())
    return Exposition(
        samples={name: "".join(lines) for name, lines in families.items()},
        rows=len(unique),
        series=series,
    )


def _render_per_row(
    t: str, esc: Callable[[str], str], rows: list[PackageStatusRow], keep: Callable[[PackageStatusRow], bool]
) -> tuple[list[str], list[str]]:
    status_lines: list[str] = []
    timestamp_lines: list[str] = []
    for row in rows:
        if not keep(row):
            continue
        labels = (
            f'{{target="{t}",site="{esc(row.site)}",package_id="{esc(row.package_id)}",'
            f'server="{esc(row.server)}",type="{esc(enum_label(row.type, TYPE_NAMES))}",'
            f'status="{esc(enum_label(row.status, STATUS_NAMES))}",'
            f'personality="{esc(enum_label(row.personality, PERSONALITY_NAMES))}"}}'
        )
        status_lines.append(f"{PACKAGE_STATUS.name}{labels} 1\n")
        if row.update_time is not None:
            timestamp_lines.append(f"{UPDATE_TIMESTAMP.name}{labels} {format_value(row.update_time)}\n")
    return status_lines, timestamp_lines


def _complete(counts: Counter[tuple[str, ...]], groups: Iterable[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
    """Counts per (group..., status) with every known status present for every group."""
    complete: dict[tuple[str, ...], int] = {}
    for group in groups:
        for status in KNOWN_STATUSES:
            complete[(*group, STATUS_NAMES[status])] = 0
    for key, count in counts.items():
        complete[key] = count  # unknown statuses appear only where they occur
    return complete


def _render_status_rows(
    t: str, esc: Callable[[str], str], rows: list[PackageStatusRow], own_site: str | None
) -> list[str]:
    counts: Counter[tuple[str, ...]] = Counter(
        (row.site, enum_label(row.type, TYPE_NAMES), enum_label(row.status, STATUS_NAMES)) for row in rows
    )
    sites = dict.fromkeys([own_site] if own_site else [])
    sites.update(dict.fromkeys(row.site for row in rows))
    groups = [(site, type_name) for site in sites for type_name in TYPE_NAMES.values()]
    groups += [(site, type_name) for site, type_name, _ in counts if (site, type_name) not in groups]
    return [
        f'{STATUS_ROWS.name}{{target="{t}",site="{esc(site)}",type="{esc(type_name)}",'
        f'status="{esc(status)}"}} {count}\n'
        for (site, type_name, status), count in _complete(counts, dict.fromkeys(groups)).items()
    ]


def _render_server_rows(t: str, esc: Callable[[str], str], rows: list[PackageStatusRow]) -> list[str]:
    counts: Counter[tuple[str, ...]] = Counter(
        (row.site, row.server, enum_label(row.status, STATUS_NAMES)) for row in rows if row.type == TYPE_COPY
    )
    servers = dict.fromkeys((site, server) for site, server, _ in counts)
    return [
        f'{SERVER_STATUS_ROWS.name}{{target="{t}",site="{esc(site)}",server="{esc(server)}",'
        f'status="{esc(status)}"}} {count}\n'
        for (site, server, status), count in _complete(counts, servers).items()
    ]


def _render_package_servers(t: str, esc: Callable[[str], str], rows: list[PackageStatusRow]) -> list[str]:
    # Distinct servers, not rows: two rows of one server differing only in Personality are one
    # server holding the package.
    holders = {
        (row.site, row.package_id, enum_label(row.status, STATUS_NAMES), row.server)
        for row in rows
        if row.type == TYPE_COPY
    }
    counts: Counter[tuple[str, ...]] = Counter(key[:3] for key in holders)
    # Every package seen in any row, MASTER included: a package on no DP yet shows all zeros.
    packages = dict.fromkeys((row.site, row.package_id) for row in rows)
    return [
        f'{PACKAGE_SERVERS.name}{{target="{t}",site="{esc(site)}",package_id="{esc(package_id)}",'
        f'status="{esc(status)}"}} {count}\n'
        for (site, package_id, status), count in _complete(counts, packages).items()
    ]
