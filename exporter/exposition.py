"""The body of `/metrics` and `/probe`: the targets' ready data families plus health families.

Everything here is put together from bytes rendered in the background, once per poll: a body is
a list of the targets' pieces in family order with small header and health lines between them,
and its gzip form splices the pieces' deflate blocks in the same way (`exporter.gzipsplice`).
Nothing of the size of the site is copied or compressed for a scrape. Bodies are cached per
generation of the targets they show (a generation changes only when a poll finishes or data goes
stale), so scrapes between two polls cost only the bytes they send.

`/probe?target=NAME` shows that target's families alone. `/metrics` adds the exporter's own
families: the build info and the reload state (cached with the body), then its process, Python
and HTTP metrics, which change on every scrape and are appended per scrape (`Body.extended`).
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exporter import __version__
from exporter.collectors import DATA_FAMILIES
from exporter.errors import REASONS
from exporter.families import Family, escape_label_value, format_value
from exporter.gzipsplice import GzipBuilder, OpenMember, Piece
from exporter.poller import TargetStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

UP = Family("sccm_up", "gauge", "1 if the last poll of the target's SMS_PackageStatus succeeded, else 0.")
POLL_DURATION = Family("sccm_poll_duration_seconds", "gauge", "How long the last poll of the target took.")
LAST_SUCCESS = Family(
    "sccm_last_poll_success_timestamp_seconds",
    "gauge",
    "Unix time at the end of the last successful poll of the target; 0 if none succeeded yet.",
)
POLL_ERRORS = Family(
    "sccm_poll_errors_total",
    "counter",
    "Failed polls of the target by reason (timeout, connection, auth, wmi_fault, parse, other).",
)
INTERVAL = Family(
    "sccm_target_interval_seconds", "gauge",
    "The target's configured poll interval: a poll starts about this often.",
)
STALE_AFTER = Family(
    "sccm_target_stale_after_seconds", "gauge",
    "The target's configured stale_after: how long after its last success a collector's rows are still served.",
)
COLLECTOR_UP = Family(
    "sccm_collector_up", "gauge",
    "1 if the collector's class was read in the target's last poll, else 0; one per enabled collector "
    "(package_status: SMS_PackageStatus, package_info: SMS_PackageBaseclass, dp_content_state: "
    "SMS_PackageStatusDistPointsSummarizer, dp_info: SMS_DistributionPointInfo).",
)
COLLECTOR_DURATION = Family(
    "sccm_collector_duration_seconds", "gauge",
    "How long the collector's read of its class took in the target's last poll.",
)
COLLECTOR_ERRORS = Family(
    "sccm_collector_errors_total", "counter",
    "Failed reads of the collector's class by reason (timeout, connection, auth, wmi_fault, parse, other).",
)
BUILD_INFO = Family(
    "sccm_exporter_build_info", "gauge", "Version of sccm-package-exporter and of the Python running it; value 1."
)

# The same for the life of the process: written once.
_BUILD_INFO_LINES = (
    f'{BUILD_INFO.header()}{BUILD_INFO.name}{{version="{escape_label_value(__version__)}",'
    f'python_version="{escape_label_value(platform.python_version())}"}} 1\n'
)


RELOAD_SUCCESSFUL = Family(
    "sccm_exporter_config_last_reload_successful", "gauge",
    "1 if the last reload of the configuration file (SIGHUP or POST /-/reload) succeeded, else 0.",
)
RELOAD_SUCCESS_TIME = Family(
    "sccm_exporter_config_last_reload_success_timestamp_seconds", "gauge",
    "Unix time of the last successful load of the configuration file (the start, or a reload).",
)


def exporter_families(reload_successful: bool, reload_success_time: float) -> str:
    """The exporter's own families of /metrics (not per target, so never on /probe): the build
    info and the configuration reload state."""
    return (
        f"{_BUILD_INFO_LINES}"
        f"{RELOAD_SUCCESSFUL.header()}{RELOAD_SUCCESSFUL.name} {int(reload_successful)}\n"
        f"{RELOAD_SUCCESS_TIME.header()}{RELOAD_SUCCESS_TIME.name} {format_value(reload_success_time)}\n"
    )


def _pieces(statuses: Sequence[TargetStatus], extra: str = "") -> list[bytes | Piece]:
    """The body in order: small text as bytes, the targets' rendered families as pieces."""
    parts: list[bytes | Piece] = []
    exposed = [data for s in statuses for data in s.exposed]
    for family in DATA_FAMILIES:
        chunks = [
            data.families[family.name]
            for data in exposed
            if family.name in data.families and data.families[family.name].size
        ]
        if chunks:
            parts.append(family.header().encode())
            parts.extend(chunks)
    tail = _health(statuses)
    tail.append(extra)
    parts.append("".join(tail).encode())
    return parts


def build_body(statuses: Sequence[TargetStatus], extra: str = "") -> Body:
    """The body for these targets, plain and gzip, without copying or compressing their pieces.

    `extra`: families of the exporter itself, rendered last (see `exporter_families`).
    """
    return _assemble(_pieces(statuses, extra), [], GzipBuilder())


def _assemble(parts: Iterable[bytes | Piece], plain: list[bytes], gzip: GzipBuilder) -> Body:
    """`plain` and `gzip` continued with `parts`: small bytes compressed here, pieces spliced."""
    for part in parts:
        if isinstance(part, Piece):
            plain.extend(part.chunks)
            gzip.add_piece(part)
        else:
            plain.append(part)
            gzip.add_bytes(part)
    member = gzip.open()
    return Body(tuple(plain), member.closed(), member)


def _health(statuses: Sequence[TargetStatus]) -> list[str]:
    if not statuses:
        return []
    names = [f'target="{escape_label_value(s.name)}"' for s in statuses]
    lines = [UP.header()]
    lines += [f"{UP.name}{{{n}}} {int(s.up)}\n" for n, s in zip(names, statuses, strict=True)]
    timed = [(n, s) for n, s in zip(names, statuses, strict=True) if s.last_duration is not None]
    if timed:
        lines.append(POLL_DURATION.header())
        lines += [f"{POLL_DURATION.name}{{{n}}} {format_value(s.last_duration or 0.0)}\n" for n, s in timed]
    lines.append(LAST_SUCCESS.header())
    lines += [
        f"{LAST_SUCCESS.name}{{{n}}} {format_value(s.last_success or 0.0)}\n"
        for n, s in zip(names, statuses, strict=True)
    ]
    lines.append(POLL_ERRORS.header())
    lines += [
        f'{POLL_ERRORS.name}{{{n},reason="{reason}"}} {s.errors.get(reason, 0)}\n'
        for n, s in zip(names, statuses, strict=True)
        for reason in REASONS
    ]
    # From the start, before any poll: an alert comparing a target's age with its schedule needs
    # the schedule even for a target that never succeeded.
    lines.append(INTERVAL.header())
    lines += [f"{INTERVAL.name}{{{n}}} {format_value(s.interval)}\n" for n, s in zip(names, statuses, strict=True)]
    lines.append(STALE_AFTER.header())
    lines += [
        f"{STALE_AFTER.name}{{{n}}} {format_value(s.stale_after)}\n" for n, s in zip(names, statuses, strict=True)
    ]
    return lines + _collector_health(statuses, names)


def _collector_health(statuses: Sequence[TargetStatus], names: Sequence[str]) -> list[str]:
    """sccm_collector_* for every enabled collector of every target."""
    each = [(n, c) for n, s in zip(names, statuses, strict=True) for c in s.collectors]
    lines = [COLLECTOR_UP.header()]
    lines += [f'{COLLECTOR_UP.name}{{{n},collector="{c.name}"}} {int(c.up)}\n' for n, c in each]
    timed = [(n, c) for n, c in each if c.last_duration is not None]
    if timed:
        lines.append(COLLECTOR_DURATION.header())
        lines += [
            f'{COLLECTOR_DURATION.name}{{{n},collector="{c.name}"}} {format_value(c.last_duration or 0.0)}\n'
            for n, c in timed
        ]
    lines.append(COLLECTOR_ERRORS.header())
    lines += [
        f'{COLLECTOR_ERRORS.name}{{{n},collector="{c.name}",reason="{reason}"}} {c.errors.get(reason, 0)}\n'
        for n, c in each
        for reason in REASONS
    ]
    return lines


@dataclass(frozen=True)
class Body:
    """A response body in parts, to be written one after the other: plain and gzip."""

    parts: tuple[bytes, ...]
    gzip_parts: tuple[bytes, ...]
    # The gzip form before it was closed: what `extended` continues.
    member: OpenMember

    def extended(self, tail: Iterable[bytes | Piece]) -> Body:
        """This body with `tail` at its end. Nothing of this body is copied or compressed again;
        of the tail, only its bytes are compressed (its pieces were when they were made)."""
        return _assemble(tail, list(self.parts), GzipBuilder(self.member))

    @property
    def length(self) -> int:
        return sum(map(len, self.parts))

    @property
    def gzip_length(self) -> int:
        return sum(map(len, self.gzip_parts))

    @property
    def text(self) -> bytes:
        return b"".join(self.parts)

    def gzipped(self) -> bytes:
        return b"".join(self.gzip_parts)


class BodyCache:
    """Rendered bodies by the generations of the targets they show; old entries are dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, str, tuple[tuple[str, int, bool], ...]], Body] = {}

    def get(self, statuses: Sequence[TargetStatus], extra: str = "", epoch: int = 0) -> Body:
        """`epoch` changes when the pollers are replaced (a reload): a new poller's generations
        start again from 0 and must not meet a body cached for the old one."""
        key = (epoch, extra, tuple(s.generation for s in statuses))
        with self._lock:
            body = self._entries.get(key)
        if body is not None:
            return body
        body = build_body(statuses, extra)
        with self._lock:
            names = {s.name for s in statuses}
            # Keep one entry per set of targets (the /metrics view and each /probe view).
            for old in [k for k in self._entries if {g[0] for g in k[2]} == names]:
                del self._entries[old]
            self._entries[key] = body
        return body
