"""The body of `/metrics` and `/probe`: the targets' ready data families plus health families.

Everything here is joined from strings rendered in the background; the result is cached per
generation of the targets it shows (a generation changes only when a poll finishes or data goes
stale), so scrapes between two polls cost only the bytes they send, gzip included.
"""

from __future__ import annotations

import gzip
import platform
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from exporter import __version__
from exporter.collector import DATA_FAMILIES, Family, escape_label_value, format_value
from exporter.errors import REASONS
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
BUILD_INFO = Family(
    "sccm_exporter_build_info", "gauge", "Version of sccm-package-exporter and of the Python running it; value 1."
)


def render(statuses: Sequence[TargetStatus]) -> str:
    """The whole exposition for these targets, one HELP/TYPE header per family."""
    parts: list[str] = []
    for family in DATA_FAMILIES:
        chunks = [s.data.samples[family.name] for s in statuses if s.data and s.data.samples.get(family.name)]
        if chunks:
            parts.append(family.header())
            parts.extend(chunks)
    parts.extend(_health(statuses))
    parts.append(BUILD_INFO.header())
    parts.append(
        f'{BUILD_INFO.name}{{version="{escape_label_value(__version__)}",'
        f'python_version="{escape_label_value(platform.python_version())}"}} 1\n'
    )
    return "".join(parts)


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
    return lines


@dataclass(frozen=True)
class Body:
    text: bytes
    _gzip: list[bytes]  # filled on first use; a list so the frozen body can memoise it

    def gzipped(self) -> bytes:
        if not self._gzip:
            # Level 1: most of the size win for a fraction of the time of the default level.
            self._gzip.append(gzip.compress(self.text, compresslevel=1, mtime=0))
        return self._gzip[0]


class BodyCache:
    """Rendered bodies by the generations of the targets they show; old entries are dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[tuple[str, int, bool], ...], Body] = {}

    def get(self, statuses: Sequence[TargetStatus]) -> Body:
        key = tuple(s.generation for s in statuses)
        with self._lock:
            body = self._entries.get(key)
        if body is not None:
            return body
        body = Body(render(statuses).encode("utf-8"), [])
        with self._lock:
            names = {s.name for s in statuses}
            # Keep one entry per set of targets (the /metrics view and each /probe view).
            for old in [k for k in self._entries if {g[0] for g in k} == names]:
                del self._entries[old]
            self._entries[key] = body
        return body
