"""Where rows come from: WinRM (the real SMS Provider), a file exported on Windows, or a demo site.

Every source answers, per collector, one question: the rows of its class now, as an iterator, so
that a large poll can be consumed page by page -- `rows(deadline)` for `SMS_PackageStatus`, and
`package_info`, `dp_content_state`, `dp_info` for the optional collectors' classes. A source
raises `PollError` (with its reason) when it cannot answer; a partly consumed iterator that raises
is a failed read of that class and none of its rows are used. The collectors of one poll read
concurrently, each from its own thread: a source keeps their connections apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from exporter.collectors.dp_content_state import DPContentRow
from exporter.collectors.dp_info import DPInfoRow
from exporter.collectors.package_info import PackageInfoRow
from exporter.config import TargetConfig
from exporter.rows import PackageStatusRow


class Source(Protocol):
    def rows(self, deadline: float) -> Iterator[PackageStatusRow]:
        """All rows of SMS_PackageStatus. `deadline` is a `time.monotonic()` value the poll must end by."""
        ...

    def package_info(self, deadline: float) -> Iterator[PackageInfoRow]:
        """All rows of SMS_PackageBaseclass (collector package_info)."""
        ...

    def dp_content_state(self, deadline: float) -> Iterator[DPContentRow]:
        """All rows of SMS_PackageStatusDistPointsSummarizer (collector dp_content_state)."""
        ...

    def dp_info(self, deadline: float) -> Iterator[DPInfoRow]:
        """All rows of SMS_DistributionPointInfo (collector dp_info)."""
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
