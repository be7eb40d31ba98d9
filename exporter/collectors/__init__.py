"""The collectors: `package_status`, the core table, and the optional ones, one module each.

Each collector reads its class (an Enumerate with an explicit property list) in the same poll as
the others, on its own failure path: its rows go into its aggregate as they stream in, and the
aggregate renders its families once per poll. One collector failing never hides the others
(`sccm_collector_up{target,collector}`); `sccm_up` follows the core one. A collector is its
module's `SPEC` (`exporter.collectors.spec.CollectorSpec`), registered below: nothing else in
the exporter names one.
"""

from __future__ import annotations

from exporter.collectors import (
    dp_content_state,
    dp_drive,
    dp_groups,
    dp_info,
    dp_status,
    package_info,
    package_status,
)
from exporter.collectors.spec import CollectorSpec
from exporter.families import Family

# The order in which collectors are listed and their families appear in /metrics.
SPECS: dict[str, CollectorSpec] = {
    spec.name: spec
    for spec in (
        package_status.SPEC,
        package_info.SPEC,
        dp_content_state.SPEC,
        dp_info.SPEC,
        dp_status.SPEC,
        dp_drive.SPEC,
        dp_groups.SPEC,
    )
}

CORE: str = next(spec.name for spec in SPECS.values() if spec.core)
DEFAULTS: frozenset[str] = frozenset(spec.name for spec in SPECS.values() if spec.default or spec.core)
DATA_FAMILIES: tuple[Family, ...] = tuple(family for spec in SPECS.values() for family in spec.families)
