"""The collectors of design.md: `package_status`, the core table, and the optional ones.

Each collector reads one WMI class (an Enumerate with an explicit property list) in the same
poll as the others, on its own failure path: its rows go into its aggregate as they stream in,
and the aggregate renders its families once per poll. One collector failing never hides the
others (`sccm_collector_up{target,collector}`); `sccm_up` follows `package_status`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from exporter.collectors import dp_content_state, dp_info, package_info, package_status
from exporter.config import COLLECTORS, Collector, PerRow
from exporter.families import Exposition, Family

if TYPE_CHECKING:
    from exporter.sources import Source


class Aggregate(Protocol):
    """One poll's rows of one class, counted in page by page; rendered once at the end."""

    @property
    def rows(self) -> int: ...

    def add(self, rows: Iterable[Any]) -> None: ...

    def render(self, target: str, own_site: str | None) -> Exposition: ...


@dataclass(frozen=True)
class CollectorSpec:
    name: Collector
    class_name: str
    families: tuple[Family, ...]
    aggregate: Callable[[PerRow], Aggregate]
    read: Callable[[Source, float], Iterable[Any]]  # the class's rows from a source, within a deadline


SPECS: dict[Collector, CollectorSpec] = {
    spec.name: spec
    for spec in (
        CollectorSpec(
            "package_status", package_status.CLASS_NAME, package_status.FAMILIES,
            package_status.PackageStatusAggregate, lambda source, deadline: source.rows(deadline),
        ),
        CollectorSpec(
            "package_info", package_info.CLASS_NAME, package_info.FAMILIES,
            lambda per_row: package_info.PackageInfoAggregate(),
            lambda source, deadline: source.package_info(deadline),
        ),
        CollectorSpec(
            "dp_content_state", dp_content_state.CLASS_NAME, dp_content_state.FAMILIES,
            dp_content_state.DPContentAggregate, lambda source, deadline: source.dp_content_state(deadline),
        ),
        CollectorSpec(
            "dp_info", dp_info.CLASS_NAME, dp_info.FAMILIES,
            lambda per_row: dp_info.DPInfoAggregate(), lambda source, deadline: source.dp_info(deadline),
        ),
    )
}
assert tuple(SPECS) == COLLECTORS, "one spec per collector name of the configuration, in its order"

# The order in which data families appear in /metrics.
DATA_FAMILIES: tuple[Family, ...] = tuple(family for spec in SPECS.values() for family in spec.families)
