"""A synthetic ConfigMgr site for the benchmarks: N packages on M distribution points.

`site_rows(packages, servers)` returns `packages * (servers + 1)` `SMS_PackageStatus` instances
in the shape the loopback WS-Management test server serves (tests/datasets.py): for each package
one MASTER row on the site server and one COPY row per distribution point. What a large site
looks like, as far as the exporter's costs go:

* `PackageID` = site code + 5 hex digits, so that its last character spreads evenly over 0-F
  (what the parallel enumerations slice on);
* `PkgServer` mostly a NAL path (`["Display=\\\\DP001...\\"]MSWNET:["SMS_SITE=BEN"]\\\\DP001...\\`),
  some plain UNC paths and a few bare host names, host names of 30-odd characters;
* `Status`: 95 % of COPY rows installed, the rest sent, received, retrying, failed, pending
  removal or removed (the `per_row: not_installed` case exports those 5 %); MASTER rows 99 %
  installed; two rows with the undocumented value 9;
* `Personality` 0, rarely 2; `UpdateTime` within the last 180 days with 0 to 6 fraction digits,
  0.5 % nil; `Location` a NAL path to the package share; `ShareName` empty.

Deterministic: the same arguments give the same rows (random.Random(seed), fixed epoch).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

SITE = "BEN"
DOMAIN = "corp.example.com"
EPOCH = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
REGIONS = ("emea", "amer", "apac", "north", "south")
# COPY row statuses: (status, weight per 1000). 950 installed: 5 % not installed.
COPY_STATUSES = ((3, 950), (1, 10), (2, 10), (4, 10), (5, 15), (7, 4), (6, 1))
UNKNOWN_STATUS = 9

Row = dict[str, Any]


def dp_host(index: int) -> str:
    return f"DP{index:03d}.{REGIONS[index % len(REGIONS)]}.{DOMAIN}"


def site_server() -> str:
    return f"CM01.{DOMAIN}"


def nal(host: str) -> str:
    return f'["Display=\\\\{host}\\"]MSWNET:["SMS_SITE={SITE}"]\\\\{host}\\'


def package_id(index: int) -> str:
    return f"{SITE}{0x10 + index:05X}"


def site_rows(packages: int, servers: int, seed: int = 1) -> list[Row]:
    """`packages * (servers + 1)` rows: per package a MASTER row and a COPY row on each DP."""
    rng = random.Random(seed)
    statuses = [status for status, weight in COPY_STATUSES for _ in range(weight)]
    hosts = [dp_host(index) for index in range(1, servers + 1)]
    pkg_servers = [[nal(host)] * 46 + [f"\\\\{host}\\"] * 3 + [host] for host in hosts]  # 92 % NAL
    master_server = nal(site_server())
    span = 180 * 86400
    rows: list[Row] = []
    for index in range(packages):
        pkg = package_id(index)
        rows.append(_row(pkg, master_server, site_server(), 1, 3 if rng.random() < 0.99 else 2, 0,
                         _moment(rng, span)))
        for dp in range(servers):
            host = hosts[dp]
            rows.append(_row(pkg, rng.choice(pkg_servers[dp]), host, 2, rng.choice(statuses),
                             2 if rng.random() < 0.005 else 0, _moment(rng, span)))
    for row in rng.sample(rows, min(2, len(rows))):
        row["Status"] = UNKNOWN_STATUS
    return rows


def _row(pkg: str, pkg_server: str, host: str, type_: int, status: int, personality: int,
         moment: datetime | None) -> Row:
    return {
        "Location": f'MSWNET:["SMS_SITE={SITE}"]\\\\{host}\\SMSPKG{"" if type_ == 1 else "D$"}\\{pkg}\\',
        "PackageID": pkg,
        "Personality": personality,
        "PkgServer": pkg_server,
        "ShareName": "",
        "SiteCode": SITE,
        "Status": status,
        "Type": type_,
        "UpdateTime": moment,
    }


def _moment(rng: random.Random, span: int) -> datetime | None:
    if rng.random() < 0.005:
        return None
    digits = rng.randrange(7)  # fraction digits on the wire, as datasets.py: 0 to 6
    micro = rng.randrange(10**digits) * 10 ** (6 - digits) if digits else 0
    return EPOCH - timedelta(seconds=rng.randrange(span), microseconds=-micro)


def dataset(packages: int, servers: int, seed: int = 1) -> dict[str, dict[str, list[Row]]]:
    """The site as WSManServer takes it (namespace -> class -> rows)."""
    return {f"root\\SMS\\site_{SITE}": {"SMS_PackageStatus": site_rows(packages, servers, seed)}}
