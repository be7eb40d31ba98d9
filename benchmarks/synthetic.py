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

The optional collectors' classes (issue 6; benchmarks/collectors.py), each from a generator of its
own so that `site_rows` and `dataset` never change:

* `package_info_rows(packages)`: one `SMS_PackageBaseclass` instance per package (the same
  PackageIDs): names of 20-50 characters by kind, `PackageType` mostly regular, application,
  driver and software update packages, `Version` (8 % nil, 6 % empty), `SourceVersion`,
  `SourceDate` (3 % nil), `PackageSize` in KB, and `Description` and `Manufacturer`, which the
  exporter's property list leaves out;
* `dp_info_rows(servers)`: one `SMS_DistributionPointInfo` per DP (`dp_host`): `NALPath` as in
  PkgServer, `ServerName`, a third pull DPs, a fifth PXE, the last one internet-facing,
  `GroupCount` 0-4;
* `content_state_rows(status_rows, info)`: one `SMS_PackageStatusDistPointsSummarizer` per
  (package, DP) with a COPY row, i.e. `packages * servers`: `State` from that row's `Status`
  (`STATE_OF_STATUS`: installed 0, sent/received 1, retry 2, failed 3, pending removal and
  removed 4, the undocumented 9 content updating 7), `ServerNALPath` the DP's NAL path,
  `PackageType`/`SourceVersion` the package's, `LastCopied` a little before the row's
  UpdateTime (nil where it is), `SummaryDate` after it.

`site_classes`/`full_dataset` hold all four classes.
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


# --- the optional collectors' classes (benchmarks/collectors.py) ------------------------------

PACKAGE_STATUS = "SMS_PackageStatus"
PACKAGE_BASECLASS = "SMS_PackageBaseclass"
DP_INFO = "SMS_DistributionPointInfo"
DP_CONTENT = "SMS_PackageStatusDistPointsSummarizer"

# SMS_PackageStatus.Status of a COPY row -> the summarizer's State of that package on that DP.
STATE_OF_STATUS = {0: 1, 1: 1, 2: 1, 3: 0, 4: 2, 5: 3, 6: 4, 7: 4, UNKNOWN_STATUS: 7}
# (PackageType, weight per 100, size range in KB, names); "{n}" is a number, "{v}" a version.
PACKAGE_KINDS: tuple[tuple[int, int, tuple[int, int], tuple[str, ...]], ...] = (
    (0, 40, (100, 2_400_000), ("Contoso Line-of-Business Tool {n} x64", "7-Zip {v} x64", "Notepad++ {v}",
                               "Adobe Acrobat Reader DC {v}", "Fonts - Corporate Identity {n}")),
    (8, 20, (2_000, 4_500_000), ("Microsoft 365 Apps for enterprise {v}", "Zoom Workplace {v}",
                                 "Power BI Desktop x64 {v}", "SAP GUI for Windows 8.00 PL {n}")),
    (3, 12, (250_000, 2_600_000), ("Dell Latitude {n} Drivers A0{v}", "HP EliteBook {n} G10 Drivers {v}",
                                   "Lenovo ThinkPad T14 Gen {n} Drivers {v}")),
    (5, 12, (40_000, 8_000_000), ("Software Updates - 20{n} Workstations", "Software Updates - 20{n} Servers")),
    (4, 8, (0, 0), ("Windows 11 23H2 - Deploy (Branch {n})", "Windows 10 22H2 - Refresh (Lab {n})")),
    (257, 3, (4_500_000, 6_900_000), ("Windows 11 Enterprise 23H2 x64 build {n}",)),
    (259, 2, (4_200_000, 5_900_000), ("Windows 11 23H2 Upgrade (en-US) {n}",)),
    (7, 2, (30_000, 900_000), ("App-V: Visio Viewer {v}",)),
    (258, 1, (420_000, 680_000), ("Boot image (x64) {n}",)),
)


def package_info_rows(packages: int, seed: int = 1) -> list[Row]:
    """One `SMS_PackageBaseclass` instance per package of `site_rows(packages, ...)`."""
    rng = random.Random(f"{seed}:{PACKAGE_BASECLASS}")
    weights = [weight for _, weight, _, _ in PACKAGE_KINDS]
    rows: list[Row] = []
    for index in range(packages):
        package_type, _, (low, high), names = rng.choices(PACKAGE_KINDS, weights)[0]
        version: str | None = f"{rng.randrange(1, 30)}.{rng.randrange(10)}.{rng.randrange(10_000)}"
        roll = rng.random()
        if roll < 0.08:
            version = None
        elif roll < 0.14:
            version = ""
        name = rng.choice(names).format(n=rng.randrange(10, 100), v=version or rng.randrange(1, 9))
        source_date = None if rng.random() < 0.03 else EPOCH - timedelta(seconds=rng.randrange(720 * 86400))
        rows.append({
            "Description": rng.choice(("", f"{name} for all workstations", "Requested by the service desk")),
            "Manufacturer": rng.choice(("", "Contoso IT", "Microsoft Corporation")),
            "Name": name,
            "PackageID": package_id(index),
            "PackageSize": rng.randint(low, high),
            "PackageType": package_type,
            "SourceDate": source_date,
            "SourceVersion": rng.randint(1, 40),
            "Version": version,
        })
    return rows


def dp_info_rows(servers: int, seed: int = 1) -> list[Row]:
    """One `SMS_DistributionPointInfo` instance per distribution point `dp_host(1..servers)`."""
    rng = random.Random(f"{seed}:{DP_INFO}")
    rows: list[Row] = []
    for index in range(1, servers + 1):
        host = dp_host(index)
        internet = index == servers and servers >= 2
        pxe = not internet and (index == 1 or rng.random() < 0.2)
        rows.append({
            "Description": rng.choice(("", f"Branch office {index:03d}", "Datacenter")),
            "Drive": rng.choice(("", "D:", "E:")),
            "GroupCount": 0 if internet else rng.randint(1, 4),
            "InternetFacing": internet,
            "IsMulticast": pxe and rng.random() < 0.5,
            "IsPXE": pxe,
            "IsPeerDP": False,
            "IsPullDP": not internet and rng.random() < 0.33,
            "NALPath": nal(host),
            "ServerName": host,
            "SiteCode": SITE,
        })
    return rows


def _host_of(pkg_server: str) -> str:
    """The host of a PkgServer as `site_rows` writes it (NAL path, UNC path or bare host)."""
    return pkg_server.rstrip("\\").rpartition("\\")[2]


def content_state_rows(status_rows: list[Row], info: list[Row], seed: int = 1) -> list[Row]:
    """One `SMS_PackageStatusDistPointsSummarizer` instance per COPY row of `status_rows`."""
    rng = random.Random(f"{seed}:{DP_CONTENT}")
    packages = {row["PackageID"]: row for row in info}
    nals: dict[str, str] = {}
    rows: list[Row] = []
    for row in status_rows:
        if row["Type"] != 2:
            continue
        host = _host_of(row["PkgServer"])
        server_nal = nals.get(host)
        if server_nal is None:
            server_nal = nals[host] = nal(host)
        package = packages.get(row["PackageID"], {})
        updated = row["UpdateTime"]
        last_copied = None if updated is None else updated - timedelta(seconds=rng.randrange(1, 900))
        rows.append({
            "LastCopied": last_copied,
            "PackageID": row["PackageID"],
            "PackageType": package.get("PackageType", 0),
            "ServerNALPath": server_nal,
            "SiteCode": SITE,
            "SourceVersion": package.get("SourceVersion", 1),
            "State": STATE_OF_STATUS.get(row["Status"], 7),
            "SummaryDate": (updated or EPOCH).replace(microsecond=0) + timedelta(seconds=rng.randrange(60, 10_800)),
        })
    return rows


def site_classes(packages: int, servers: int, seed: int = 1) -> dict[str, list[Row]]:
    """Every class the collectors read: `SMS_PackageStatus` (`site_rows`) and the three optional ones."""
    status = site_rows(packages, servers, seed)
    info = package_info_rows(packages, seed)
    return {
        PACKAGE_STATUS: status,
        PACKAGE_BASECLASS: info,
        DP_INFO: dp_info_rows(servers, seed),
        DP_CONTENT: content_state_rows(status, info, seed),
    }


def full_dataset(packages: int, servers: int, seed: int = 1) -> dict[str, dict[str, list[Row]]]:
    """The site with every collector's class, as WSManServer takes it."""
    return {f"root\\SMS\\site_{SITE}": site_classes(packages, servers, seed)}
