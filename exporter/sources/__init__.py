"""Where rows come from: WinRM (the real SMS Provider), a file exported on Windows, or a demo site.

Every source answers one question, `rows(deadline)`: the rows of `SMS_PackageStatus` now, as an
iterator, so that a large poll can be consumed page by page. A source raises `PollError` (with
its reason) when it cannot answer; a partly consumed iterator that raises is a failed poll and
none of its rows are used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from exporter.config import TargetConfig
from exporter.rows import PackageStatusRow


class Source(Protocol):
    def rows(self, deadline: float) -> Iterator[PackageStatusRow]:
        """All rows of the class. `deadline` is a `time.monotonic()` value the poll must end by."""
        ...

    def site_code(self) -> str | None:
        """The target's own site code once known (configured or discovered), else None."""
        ...

    def close(self) -> None:
        """Drop connections; called when the exporter stops or the target is reconfigured."""
        ...


def make_source(target: TargetConfig) -> Source:
    """The source a target's configuration asks for."""
    if target.source == "winrm":
        from exporter.sources.winrm import WinRMSource

        return WinRMSource(target)
    if target.source == "file":
        from exporter.sources.file import FileSource

        return FileSource(target)
    from exporter.sources.demo import DemoSource

    return DemoSource(target)
