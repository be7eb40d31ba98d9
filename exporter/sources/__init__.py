"""Where instances come from: WinRM (the real SMS Provider), a file exported on Windows, or a demo site.

Each answers the one question of `exporter.wmi.Source`; `make_source` picks the one a target's
configuration asks for. The collectors of one poll read at once, each from its own thread: a
source keeps their connections apart.
"""

from __future__ import annotations

from exporter.config import TargetConfig
from exporter.wmi import Source


def make_source(target: TargetConfig) -> Source:
    """The source a target's configuration asks for."""
    if target.source == "winrm":
        from exporter.winrm.source import WinRMSource

        return WinRMSource(target)
    if target.source == "file":
        from exporter.sources.file import FileSource

        return FileSource(target)
    from exporter.sources.demo import DemoSource

    return DemoSource(target)
