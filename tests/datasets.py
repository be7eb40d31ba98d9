"""Deterministic SMS_PackageStatus data sets for the test suite.

Why this exists: every test of the exporter (WinRM client, collector, metrics, benchmarks) needs
rows that look like what a ConfigMgr SMS Provider returns, and needs the *same* rows on every run
so expected values can be computed from the data set itself.  Everything here is a pure function
of its arguments (``random.Random(seed)``, no clock, no environment), and importing the module has
no side effects.

Rows are plain ``dict``s keyed by the WMI property name (the shape ``tests.wsman_server`` serves):
strings, ints, ``None`` for a WMI null, and timezone-aware ``datetime`` values for ``UpdateTime``.

What a site contains (see ``make_site``):

* one MASTER row (``Type`` 1) per package on the site server, and one COPY row (``Type`` 2) per
  distribution point the package was sent to (a seeded subset of the site's DPs);
* a few (package, DP) pairs with a second COPY row in another status: ``Status`` is part of the
  key, so the same package/server/type can legitimately appear twice;
* ``PackageID`` is the site code plus five hex digits, starting at ``<SITE>00010``, so the last
  character cycles evenly over ``0-9A-F`` and a ``LIKE '%X'`` split gives 16 even-ish slices;
* ``PkgServer`` mostly a NAL path, some plain UNC paths (``\\\\host\\``), a few bare host names;
* ``Status`` mostly 3 (installed), some 1/2/4/5/7, and exactly two rows with the unknown value 9;
* ``Personality`` mostly 0, a few 2 (FPNW);
* ``UpdateTime`` aware UTC datetimes with 0 to 6 fraction digits (trailing zeros dropped on the
  wire), about 1 % ``None``;
* a couple of ``ShareName`` values with XML-special and non-ASCII characters (``&``, ``<``, é).

The optional collectors' classes (issue 6), beside ``SMS_PackageStatus`` in each site namespace,
each from its own seeded generator so that the core rows above never change:

* ``SMS_PackageBaseclass`` (``make_package_info``): one instance per package of the site (the
  same PackageIDs) plus ``UNDISTRIBUTED_PACKAGES`` packages with no status rows at all (created,
  not yet distributed).  Realistic names per kind; three nasty ones (``NASTY_PACKAGE_NAMES``:
  ``&`` and ``<``; é and ü; a double quote and a backslash).  ``Version`` text, ``""`` for some,
  ``None`` for some; ``PackageType`` a mix of 0, 3, 4, 5, 6, 7, 8, 257, 258, 259 and exactly one
  ``UNKNOWN_PACKAGE_TYPE`` (42); ``SourceVersion`` ints; ``SourceDate`` aware UTC datetimes (a
  few ``None``); ``PackageSize`` ints in KB (exactly one ``None``).  Every instance also has
  properties the exporter must not ask for (``UNREQUESTED_PACKAGE_PROPERTIES``), among them the
  lazy, large ``Icon`` (a base64 string of several KB).
* ``SMS_PackageStatusDistPointsSummarizer`` (``make_dp_content``): one instance per (package,
  distribution point) pair with COPY rows, ``State`` derived from the COPY rows' ``Status``
  (``STATE_OF_STATUS``: installed -> 0, sent/received -> 1, retry -> 2, failed -> 3,
  pending_remove -> 4, the unknown 9 -> 7 content_updating; a pair with two COPY rows takes its
  not-installed one), then a few installed ones turned into the states the status rows cannot
  give (5, 6, 8, and any other known state still missing) and exactly one into
  ``UNKNOWN_STATE`` (11), so that every state occurs on every site.  ``ServerNALPath`` the NAL
  path of the DP's host (spelled as in PkgServer), ``PackageType``/``SourceVersion`` those of
  the package, ``LastCopied`` (about 2 %, at least one, ``None``) and ``SummaryDate`` datetimes.
* ``SMS_DistributionPointInfo`` (``make_dp_info``): one instance per DP of the site (the site
  server is not a DP here): ``NALPath``, ``ServerName`` (the FQDN), ``SiteCode``, booleans
  ``IsPullDP`` (some), ``IsPXE`` (DP01 and maybe others), ``IsMulticast``, ``IsPeerDP`` (always
  false), ``InternetFacing`` (exactly the last DP), ``GroupCount`` ints with exactly one ``None``.

Values use types ``tests.wsman_server`` renders as Windows does: ``bool`` -> ``true``/``false``,
``int`` -> digits, ``None`` -> ``xsi:nil``, aware ``datetime`` -> xs:dateTime with ``Z``.
"""

from __future__ import annotations

import base64
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

Row = dict[str, Any]
"""One WMI instance: property name -> value."""

Dataset = dict[str, dict[str, list[Row]]]
"""WMI namespace (``root\\SMS\\site_ABC``) -> class name -> instances, as WSManServer serves it."""

DOMAIN = "corp.example.com"
PROVIDER_MACHINE = f"CM01.{DOMAIN}"
THREE_SITES: tuple[tuple[str, int, int, int], ...] = (
    # site code, packages, distribution points, seed
    ("ABC", 192, 12, 101),
    ("DEF", 96, 8, 202),
    ("GHI", 48, 5, 303),
)
UNKNOWN_STATUS = 9
_BASE_TIME = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
_FIRST_PACKAGE_NUMBER = 0x10
# (status, weight) for COPY rows: mostly installed, a realistic tail of the others.
_COPY_STATUS_WEIGHTS: tuple[tuple[int, int], ...] = ((3, 850), (1, 30), (2, 40), (4, 30), (5, 35), (7, 15))
_ODD_SHARE_NAMES = ("Pkg & Tools <x86>", "Café_Share")


def site_namespace(site_code: str) -> str:
    """The WMI namespace of a site's SMS Provider, as ConfigMgr names it: ``root\\SMS\\site_ABC``."""
    return f"root\\SMS\\site_{site_code}"


def package_id(site_code: str, index: int) -> str:
    """The ``index``-th (0-based) package ID of a site: ``ABC00010``, ``ABC00011``, ... (8 chars)."""
    return f"{site_code}{_FIRST_PACKAGE_NUMBER + index:05X}"


def site_server(site_code: str) -> str:
    """Host name of the site server holding the MASTER copies of a site's packages."""
    return f"CM-{site_code}.{DOMAIN}"


def dp_host(site_code: str, index: int) -> str:
    """Host name of a site's ``index``-th (1-based) distribution point."""
    return f"{site_code}-DP{index:02d}.{DOMAIN}"


def nal_path(host: str, site_code: str) -> str:
    """The NAL form ConfigMgr writes into PkgServer: ``["Display=\\\\host\\"]MSWNET:["SMS_SITE=ABC"]\\\\host\\``."""
    return f'["Display=\\\\{host}\\"]MSWNET:["SMS_SITE={site_code}"]\\\\{host}\\'


def _pkg_server_value(rng: random.Random, host: str, site_code: str) -> str:
    """PkgServer as seen in the wild: mostly NAL, some plain UNC (about 5 %), a few bare hosts (1 %)."""
    roll = rng.random()
    if roll < 0.01:
        return host
    if roll < 0.06:
        return f"\\\\{host}\\"
    return nal_path(host, site_code)


def _update_time(rng: random.Random) -> datetime | None:
    """A past UTC time whose fraction renders with 0 to 6 digits; about 1 % None (WMI null)."""
    if rng.random() < 0.01:
        return None
    seconds = rng.randrange(90 * 24 * 3600)
    kind = rng.randrange(4)
    micro = (0, rng.randrange(1, 10) * 100_000, rng.randrange(1, 1000) * 1000, rng.randrange(1, 1_000_000))[kind]
    return _BASE_TIME - timedelta(seconds=seconds) + timedelta(microseconds=micro)


def _copy_status(rng: random.Random) -> int:
    statuses = [s for s, _ in _COPY_STATUS_WEIGHTS]
    weights = [w for _, w in _COPY_STATUS_WEIGHTS]
    return rng.choices(statuses, weights)[0]


def _master_row(rng: random.Random, site_code: str, pkg: str) -> Row:
    host = site_server(site_code)
    return {
        "Location": f'MSWNET:["SMS_SITE={site_code}"]\\\\{host}\\SMSPKG\\{pkg}.PCK',
        "PackageID": pkg,
        "Personality": 0,
        "PkgServer": nal_path(host, site_code),
        "ShareName": "",
        "SiteCode": site_code,
        "Status": 3 if rng.random() < 0.97 else 2,
        "Type": 1,
        "UpdateTime": _update_time(rng),
    }


def _copy_row(rng: random.Random, site_code: str, pkg: str, host: str, status: int) -> Row:
    return {
        "Location": f'MSWNET:["SMS_SITE={site_code}"]\\\\{host}\\SMSPKGD$\\{pkg}\\',
        "PackageID": pkg,
        "Personality": 2 if rng.random() < 0.01 else 0,
        "PkgServer": _pkg_server_value(rng, host, site_code),
        "ShareName": "" if rng.random() < 0.9 else f"SMSPKG_{pkg}",
        "SiteCode": site_code,
        "Status": status,
        "Type": 2,
        "UpdateTime": _update_time(rng),
    }


def _package_rows(rng: random.Random, site_code: str, pkg: str, servers: int) -> list[Row]:
    """MASTER row, then one COPY row per chosen DP, sometimes a second COPY row in another status."""
    rows = [_master_row(rng, site_code, pkg)]
    if servers <= 0:
        return rows
    count = rng.randint(max(1, servers // 2), servers)
    for dp in sorted(rng.sample(range(1, servers + 1), count)):
        host = dp_host(site_code, dp)
        status = _copy_status(rng)
        rows.append(_copy_row(rng, site_code, pkg, host, status))
        if rng.random() < 0.02:
            other = 2 if status == 3 else 3
            rows.append(_copy_row(rng, site_code, pkg, host, other))
    return rows


def _sprinkle_oddities(rng: random.Random, rows: list[Row]) -> None:
    """Exactly two COPY rows get the unknown Status 9; two get XML-special/non-ASCII share names."""
    copies = [i for i, row in enumerate(rows) if row["Type"] == 2]
    if len(copies) < 4:
        return
    picked = rng.sample(copies, 4)
    for i in picked[:2]:
        rows[i]["Status"] = UNKNOWN_STATUS
    for i, name in zip(picked[2:], _ODD_SHARE_NAMES, strict=True):
        rows[i]["ShareName"] = name


def make_site(site_code: str, packages: int, servers: int, seed: int) -> list[Row]:
    """Generate a site's SMS_PackageStatus instances; the same arguments always give the same rows.

    ``site_code`` must be three characters so PackageIDs are the 8 characters ConfigMgr uses.
    ``servers`` is the number of distribution points (COPY rows); 0 gives MASTER rows only.
    """
    if len(site_code) != 3:
        raise ValueError(f"site code must be 3 characters, got {site_code!r}")
    rng = random.Random(f"{site_code}:{seed}")
    rows: list[Row] = []
    for index in range(packages):
        rows.extend(_package_rows(rng, site_code, package_id(site_code, index), servers))
    _sprinkle_oddities(rng, rows)
    return rows


def provider_locations(
    site_codes: list[str] | tuple[str, ...], machine: str, local_site: str | None = None
) -> list[Row]:
    """SMS_ProviderLocation instances (``root\\SMS``) for a provider serving ``site_codes``.

    ``ProviderForLocalSite`` is true only for ``local_site`` (default: the first site code), so a
    client discovering "its" site code with that property finds exactly one.
    """
    local = local_site if local_site is not None else (site_codes[0] if site_codes else None)
    return [
        {
            "Machine": machine,
            "NamespacePath": f"\\\\{machine}\\root\\sms\\site_{code}",
            "ProviderForLocalSite": code == local,
            "SiteCode": code,
        }
        for code in site_codes
    ]


# --------------------------------------------------------------------------- optional collectors' classes

PACKAGE_STATUS = "SMS_PackageStatus"
PROVIDER_LOCATION = "SMS_ProviderLocation"
PACKAGE_BASECLASS = "SMS_PackageBaseclass"
DP_CONTENT_SUMMARIZER = "SMS_PackageStatusDistPointsSummarizer"
DP_INFO = "SMS_DistributionPointInfo"
DP_STATUS = "SMS_DPStatusInfo"
DP_DRIVE = "SMS_DistributionPointDriveInfo"
DP_GROUP = "SMS_DistributionPointGroup"
DP_GROUP_MEMBERS = "SMS_DPGroupMembers"
UNKNOWN_MESSAGE_STATE = 4
NASTY_GROUP_NAME = 'Zweigstellen "Süd" \\ Düsseldorf & <Köln>'
"""A DP group name for label escaping: double quotes, a backslash, non-ASCII, ``&`` and ``<``."""

UNKNOWN_PACKAGE_TYPE = 42
UNKNOWN_STATE = 11
UNDISTRIBUTED_PACKAGES = 3
"""Packages of SMS_PackageBaseclass with no SMS_PackageStatus rows (created, not yet distributed)."""
NASTY_PACKAGE_NAMES = (
    "Visual C++ 2015-2022 Redistributable <x64> & <x86>",
    "Pilotes imprimante réseau \u2013 Bürodrucker Düsseldorf",
    'Logon script "Contoso" from \\\\fs01\\netlogon\\',
)
"""Names for label escaping: ``&`` and ``<``; non-ASCII (é, ü, an en dash); a double quote and backslashes."""
UNREQUESTED_PACKAGE_PROPERTIES = ("Description", "Icon", "Language", "Manufacturer", "PkgFlags", "PkgSourcePath")
"""Properties of every SMS_PackageBaseclass instance that the exporter's property list leaves out."""

STATE_OF_STATUS: dict[int, int] = {0: 1, 1: 1, 2: 1, 3: 0, 4: 2, 5: 3, 6: 4, 7: 4, UNKNOWN_STATUS: 7}
"""SMS_PackageStatus.Status of a COPY row -> the summarizer's State for that package on that DP."""

# The first packages of every site, in PackageID order: (PackageType, Name, Version, Manufacturer).
# They make sure every kind the exporter names occurs even on a small site.
_PREAMBLE: tuple[tuple[int, str, str | None, str], ...] = (
    (0, "Configuration Manager Client Package", "5.00.9122.1000", "Microsoft Corporation"),
    (258, "Boot image (x64)", "10.0.22621.1", "Microsoft Corporation"),
    (257, "Windows 11 Enterprise 23H2 x64", "10.0.22631.2861", "Microsoft Corporation"),
    (4, "Windows 11 23H2 - Deploy", None, ""),
    (259, "Windows 11 23H2 Upgrade (en-US)", "10.0.22631.2861", "Microsoft Corporation"),
    (3, "Dell Latitude 7440 Drivers A05", "A05", "Dell Inc."),
    (5, "Software Updates - 2024-04 Workstations", "", ""),
    (8, "Microsoft 365 Apps for enterprise x64", "16.0.17328.20162", "Microsoft Corporation"),
    (0, "Configuration Manager Client Piloting Package", "5.00.9122.1000", "Microsoft Corporation"),
    (6, "Windows Hello for Business settings", "", ""),
    (7, "App-V: Visio Viewer 2016", "16.0.4266.1001", "Microsoft Corporation"),
)
_REGULAR = (
    ("7-Zip {v} x64", ("23.01", "24.05"), "Igor Pavlov"),
    ("Notepad++ {v}", ("8.6.4", "8.6.7"), "Don Ho"),
    ("Adobe Acrobat Reader DC {v}", ("24.001.20643", "23.008.20470"), "Adobe"),
    ("Google Chrome Enterprise {v}", ("124.0.6367.92", "125.0.6422.61"), "Google LLC"),
    ("Mozilla Firefox ESR {v}", ("115.10.0", "115.11.0"), "Mozilla"),
    ("User State Migration Tool for Windows", ("10.1.22621.2428",), "Microsoft Corporation"),
    ("Cisco Secure Client {v}", ("5.1.2.42",), "Cisco Systems, Inc."),
    ("Citrix Workspace {v}", ("24.3.0.64",), "Citrix"),
    ("Fonts - Corporate Identity", ("", "2024"), "Contoso IT"),
    ("BIOS Update Tools", ("", "1.2"), "Contoso IT"),
)
_DRIVERS = (
    ("Dell Latitude {m} Drivers {v}", ("5440", "7340", "9440"), ("A03", "A04", "A06")),
    ("HP EliteBook {m} Drivers {v}", ("840 G10", "860 G10", "640 G11"), ("1.00", "1.02", "2.01")),
    ("Lenovo ThinkPad {m} Drivers {v}", ("T14 Gen 4", "X1 Carbon Gen 11"), ("202403", "202405")),
    ("Microsoft Surface {m} Drivers {v}", ("Laptop 5", "Pro 9"), ("24.031.10952.0",)),
)
_TASK_SEQUENCES = (
    "Windows 11 23H2 - Deploy ({m})", "Windows 10 22H2 - Refresh ({m})", "Windows 11 23H2 - Upgrade ({m})",
    "Capture reference image ({m})", "Install Language Pack fr-FR ({m})",
)
_UPDATES = (
    "Software Updates - {y}-{mm} Workstations", "Software Updates - {y}-{mm} Servers",
    "Microsoft 365 Apps Updates {y}-{mm}", "Defender Definition Updates {y}-{mm}",
)
_APPLICATIONS = (
    ("Microsoft Teams (work or school)", "24091.214.2846.1452", "Microsoft Corporation"),
    ("Zoom Workplace", "6.0.2.33403", "Zoom Video Communications"),
    ("Power BI Desktop x64", "2.128.952.0", "Microsoft Corporation"),
    ("Visual Studio Code (system)", "1.88.1", "Microsoft Corporation"),
    ("Python 3.12 x64", "3.12.3", "Python Software Foundation"),
    ("SAP GUI for Windows", "8.00 PL 10", "SAP SE"),
    ("Snagit 2024", "24.1.0", "TechSmith"),
)
# (PackageType, weight) of the packages after the preamble.
_TYPE_WEIGHTS: tuple[tuple[int, int], ...] = (
    (0, 40), (3, 12), (4, 8), (5, 12), (8, 20), (6, 1), (7, 2), (257, 2), (258, 1), (259, 2),
)
# (low, high) PackageSize in KB per PackageType.
_SIZE_KB: dict[int, tuple[int, int]] = {
    0: (120, 2_400_000), 3: (250_000, 2_600_000), 4: (0, 0), 5: (40_000, 8_000_000), 6: (1, 40),
    7: (30_000, 900_000), 8: (2_000, 4_500_000), 257: (4_500_000, 6_900_000), 258: (420_000, 680_000),
    259: (4_200_000, 5_900_000),
}


def _past(rng: random.Random, days: int, fraction: bool = False) -> datetime:
    """A moment within ``days`` before the data set's fixed clock; whole seconds unless ``fraction``."""
    moment = _BASE_TIME - timedelta(seconds=rng.randrange(days * 24 * 3600))
    if fraction and rng.random() < 0.5:
        moment += timedelta(microseconds=rng.randrange(1, 1000) * 1000)
    return moment


def _icons(rng: random.Random) -> list[str]:
    """A few large base64 "icons" shared by the site's packages (the lazy Icon property)."""
    return [base64.b64encode(rng.randbytes(rng.randrange(4_500, 7_000))).decode("ascii") for _ in range(4)]


def _package_kind(rng: random.Random, package_type: int, month: int) -> tuple[str, str | None, str]:
    """(Name, Version, Manufacturer) of a package of that kind; Version None or "" for some."""
    if package_type == 0:
        template, versions, maker = rng.choice(_REGULAR)
        version: str | None = rng.choice(versions)
        name = template.format(v=version)
    elif package_type == 3:
        template, models, revisions = rng.choice(_DRIVERS)
        version = rng.choice(revisions)
        name, maker = template.format(m=rng.choice(models), v=version), template.split(" ", 1)[0]
    elif package_type == 4:
        name, version, maker = rng.choice(_TASK_SEQUENCES).format(m=rng.choice(("HQ", "Branch", "Lab"))), "", ""
    elif package_type == 5:
        year, mm = 2023 + month // 12, month % 12 + 1
        name, version, maker = rng.choice(_UPDATES).format(y=year, mm=f"{mm:02d}"), "", ""
    elif package_type == 8:
        name, version, maker = rng.choice(_APPLICATIONS)
    elif package_type == 6:
        name, version, maker = "Wi-Fi profile - Corp", "", ""
    elif package_type == 7:
        name, version, maker = "App-V: Project Viewer", "1.0", "Contoso IT"
    elif package_type == 257:
        name, version, maker = "Windows 10 Enterprise 22H2 x64", "10.0.19045.4291", "Microsoft Corporation"
    elif package_type == 258:
        name, version, maker = "Boot image (x86)", "10.0.22621.1", "Microsoft Corporation"
    else:
        name, version, maker = "Windows 10 22H2 Upgrade (en-US)", "10.0.19045.2965", "Microsoft Corporation"
    roll = rng.random()
    if roll < 0.08:
        version = None
    elif roll < 0.14:
        version = ""
    return name, version, maker


def _package_row(rng: random.Random, site_code: str, pkg: str, package_type: int, name: str,
                 version: str | None, maker: str, icons: list[str]) -> Row:
    low, high = _SIZE_KB[package_type]
    source_date: datetime | None = _past(rng, 720, fraction=True)
    if rng.random() < 0.04:
        source_date = None
    return {
        "Description": rng.choice(("", f"{name} for all workstations", "Requested by the service desk")),
        "Icon": rng.choice(icons),
        "Language": rng.choice(("", "English", "English (United States)")),
        "Manufacturer": maker,
        "Name": name,
        "PackageID": pkg,
        "PackageSize": rng.randint(low, high),
        "PackageType": package_type,
        "PkgFlags": rng.choice((0, 16777216, 33554432)),
        "PkgSourcePath": f"\\\\fs01.{DOMAIN}\\sources$\\{site_code}\\{pkg}",
        "SourceDate": source_date,
        "SourceVersion": rng.randint(1, 6 if package_type in (4, 257, 258, 259) else 40),
        "Version": version,
    }


def make_package_info(
    site_code: str, packages: int, seed: int, undistributed: int = UNDISTRIBUTED_PACKAGES
) -> list[Row]:
    """SMS_PackageBaseclass instances of a site: ``package_id(site, 0..packages-1)`` (the packages of
    ``make_site(site_code, packages, ..., seed)``), then ``undistributed`` more with no status rows.

    Deterministic, and independent of ``make_site``'s generator.  With at least ``len(_PREAMBLE)``
    packages every named PackageType occurs; with at least 5 instances there is exactly one
    ``UNKNOWN_PACKAGE_TYPE``, one ``PackageSize`` of ``None``, at least one ``SourceDate`` of
    ``None``, one ``Version`` of ``None`` and one of ``""``, and the three ``NASTY_PACKAGE_NAMES``
    (on distributed packages when there are enough).
    """
    rng = random.Random(f"{site_code}:{seed}:{PACKAGE_BASECLASS}")
    icons = _icons(rng)
    types = [t for t, _ in _TYPE_WEIGHTS]
    weights = [w for _, w in _TYPE_WEIGHTS]
    rows: list[Row] = []
    total = packages + undistributed
    for index in range(total):
        pkg = package_id(site_code, index)
        if index < len(_PREAMBLE) and index < packages:
            package_type, name, version, maker = _PREAMBLE[index]
        else:
            package_type = rng.choices(types, weights)[0]
            name, version, maker = _package_kind(rng, package_type, rng.randrange(17))
        rows.append(_package_row(rng, site_code, pkg, package_type, name, version, maker, icons))
    if total >= 5:
        _package_oddities(rng, rows, packages)
    return rows


def _package_oddities(rng: random.Random, rows: list[Row], packages: int) -> None:
    """The one unknown PackageType, the nasty names, and at least one of each kind of null/empty."""
    plain = [i for i in range(len(rows)) if i >= len(_PREAMBLE) or i >= packages]
    distributed = [i for i in plain if i < packages]
    pool = distributed if len(distributed) >= 4 else plain if len(plain) >= 4 else list(range(len(rows)))
    unknown, *nasty = rng.sample(pool, 4)
    rows[unknown]["PackageType"] = UNKNOWN_PACKAGE_TYPE
    for i, name in zip(nasty, NASTY_PACKAGE_NAMES, strict=True):
        rows[i]["Name"] = name
    none_size, none_date, none_version, empty_version = rng.sample(range(len(rows)), 4)
    rows[none_size]["PackageSize"] = None
    rows[none_date]["SourceDate"] = None
    if not any(r["Version"] is None for r in rows):
        rows[none_version]["Version"] = None
    if not any(r["Version"] == "" for r in rows):
        rows[empty_version]["Version"] = ""


def _host_of_pkg_server(value: str) -> str:
    """The host of a PkgServer as this module writes it (NAL path, ``\\\\host\\`` or bare host)."""
    return value.rstrip("\\").rpartition("\\")[2]


def make_dp_content(site_code: str, status_rows: list[Row], package_info: list[Row], seed: int) -> list[Row]:
    """SMS_PackageStatusDistPointsSummarizer instances for a site's SMS_PackageStatus rows.

    One instance per (PackageID, DP host) pair with COPY rows, in the order the rows name them;
    ``State`` from ``STATE_OF_STATUS`` (the pair's first not-installed Status when it has two
    COPY rows), then a few installed instances turned into the states 5, 6, 8, any known state
    still missing, and exactly one ``UNKNOWN_STATE``.  ``PackageType`` and ``SourceVersion`` are
    the package's in ``package_info``.  Deterministic, independent of ``make_site``'s generator.
    """
    rng = random.Random(f"{site_code}:{seed}:{DP_CONTENT_SUMMARIZER}")
    packages = {row["PackageID"]: row for row in package_info}
    pairs: dict[tuple[str, str], list[Row]] = {}
    for row in status_rows:
        if row["Type"] == 2:
            pairs.setdefault((row["PackageID"], _host_of_pkg_server(row["PkgServer"])), []).append(row)
    rows: list[Row] = []
    for (pkg, host), copies in pairs.items():
        statuses = [r["Status"] for r in copies]
        status = next((s for s in statuses if s != 3), 3)
        stamps = [r["UpdateTime"] for r in copies if r["UpdateTime"] is not None]
        last_copied = (max(stamps) if stamps else _past(rng, 90)) - timedelta(seconds=rng.randrange(1, 900))
        package = packages.get(pkg, {})
        rows.append({
            "LastCopied": last_copied,
            "PackageID": pkg,
            "PackageType": package.get("PackageType", 0),
            "ServerNALPath": nal_path(host, site_code),
            "SiteCode": site_code,
            "SiteName": f"{site_code} Primary Site",
            "SourceNALPath": nal_path(site_server(site_code), site_code),
            "SourceVersion": package.get("SourceVersion", 1),
            "State": STATE_OF_STATUS.get(status, 7),
            "SummaryDate": last_copied.replace(microsecond=0) + timedelta(seconds=rng.randrange(60, 3 * 3600)),
        })
    if rows:
        _dp_content_oddities(rng, rows)
    return rows


def _dp_content_oddities(rng: random.Random, rows: list[Row]) -> None:
    """Every state on the site (from installed instances), exactly one unknown, about 2 % LastCopied nil."""
    present = {row["State"] for row in rows}
    wanted = [5, 6, 8] + [s for s in (1, 2, 3, 4, 7) if s not in present] + [UNKNOWN_STATE]
    installed = [i for i, row in enumerate(rows) if row["State"] == 0]
    for i, state in zip(rng.sample(installed, min(len(wanted), len(installed))), wanted[::-1], strict=False):
        rows[i]["State"] = state
    for i in rng.sample(range(len(rows)), max(1, round(len(rows) * 0.02))):
        rows[i]["LastCopied"] = None


def make_dp_info(site_code: str, servers: int, seed: int) -> list[Row]:
    """SMS_DistributionPointInfo instances for DPs ``dp_host(site_code, 1..servers)``.

    DP01 answers PXE and multicast; the last DP (when there are two or more) is the one
    internet-facing DP (neither pull nor PXE); about a third of the others are pull DPs (at least
    one when there are three or more DPs); no peer DPs; ``GroupCount`` 0-4, exactly one ``None``.
    """
    rng = random.Random(f"{site_code}:{seed}:{DP_INFO}")
    middle = list(range(2, servers))
    pulls = set(rng.sample(middle, max(1, len(middle) // 3))) if middle else set()
    rows: list[Row] = []
    for index in range(1, servers + 1):
        host = dp_host(site_code, index)
        internet = index == servers and servers >= 2
        pxe = index == 1 or (not internet and rng.random() < 0.2)
        rows.append({
            "Description": rng.choice(("", f"Branch office {index:02d}", "Datacenter")),
            "Drive": rng.choice(("", "D:", "E:")),
            "GroupCount": 0 if internet else rng.randint(1, 4),
            "InternetFacing": internet,
            "IsActive": True,
            "IsMulticast": index == 1 or (pxe and rng.random() < 0.5),
            "IsPXE": pxe,
            "IsPeerDP": False,
            "IsProtected": rng.random() < 0.3,
            "IsPullDP": index in pulls,
            "NALPath": nal_path(host, site_code),
            "ResourceType": "Windows NT Server",
            "ServerName": host,
            "SiteCode": site_code,
            "SiteName": f"{site_code} Primary Site",
        })
    if rows:
        rows[rng.randrange(len(rows))]["GroupCount"] = None
    return rows


def make_dp_status(site_code: str, status_rows: list[Row], servers: int, seed: int) -> list[Row]:
    """SMS_DPStatusInfo instances for DPs ``dp_host(site_code, 1..servers)``, counted from the COPY rows.

    ``NumberInstalled`` the DP's COPY rows installed, ``NumberInProgress`` those sent, received or
    retrying, ``NumberErrors`` the failed ones, ``NumberUnknown`` the rest; ``MessageState`` 3 (error)
    with errors, else 2 (in progress) with some in progress, else 1. Then oddities: the first DP
    has a nil ``LastStatusTime`` and ``IsDPMonEnabled``, one DP the unknown ``MessageState`` 4, one
    a nil ``MessageState`` (a DP that never reported) and nil counts. NAL paths carry the site;
    every instance also has properties the exporter does not ask for (``MessageCount``, ``Version``).
    """
    rng = random.Random(f"{site_code}:{seed}:{DP_STATUS}")
    rows: list[Row] = []
    for index in range(1, servers + 1):
        host = dp_host(site_code, index)
        mine = [r for r in status_rows if r["Type"] == 2 and _host_of_pkg_server(r["PkgServer"]) == host]
        counts = Counter("installed" if r["Status"] == 3 else "in_progress" if r["Status"] in (1, 2, 4)
                         else "errors" if r["Status"] == 5 else "unknown" for r in mine)
        times = [r["UpdateTime"] for r in mine if r["UpdateTime"] is not None]
        state = 3 if counts["errors"] else 2 if counts["in_progress"] else 1
        rows.append({
            "IsDPMonEnabled": rng.random() < 0.8, "IsMulticast": False, "IsPXE": index == 1, "IsPullDP": False,
            "LastStatusTime": max(times) if times else None, "MessageCount": rng.randint(0, 500),
            "MessageState": state, "NALPath": nal_path(host, site_code), "Name": host,
            "NumberErrors": counts["errors"], "NumberInProgress": counts["in_progress"],
            "NumberInstalled": counts["installed"], "NumberUnknown": counts["unknown"],
            "Version": "5.00.9122.1000",
        })
    if rows:
        rows[0]["LastStatusTime"] = None
        rows[0]["IsDPMonEnabled"] = None
    if len(rows) >= 3:
        rows[1]["MessageState"] = UNKNOWN_MESSAGE_STATE
        rows[2].update(MessageState=None, NumberErrors=None, NumberInProgress=None, NumberInstalled=None,
                       NumberUnknown=None, LastStatusTime=None)
    return rows


def make_dp_drives(site_code: str, servers: int, seed: int) -> list[Row]:
    """SMS_DistributionPointDriveInfo instances: drives ``C:`` and ``D:`` (the content library) of each
    DP, sizes in KB; the second DP's ``D:`` nearly full; one more drive of unknown size (``BytesTotal``
    -1) on the first DP; ``SiteCode`` empty on one row (the NAL path's site then); properties the
    exporter does not ask for (``PercentFree``, ``Status``, ``ConttentLibPriority``, misspelled as
    in the real class).
    """
    rng = random.Random(f"{site_code}:{seed}:{DP_DRIVE}")
    gib = 1024 * 1024
    rows: list[Row] = []
    for index in range(1, servers + 1):
        host = dp_host(site_code, index)
        for drive, total in (("C:", rng.choice((100, 127, 200)) * gib), ("D:", rng.choice((500, 1024, 2048)) * gib)):
            share = 0.03 if (index, drive) == (2, "D:") else rng.uniform(0.2, 0.8)
            free = int(total * share)
            rows.append({
                "BytesFree": free, "BytesTotal": total, "ConttentLibPriority": 1 if drive == "D:" else 2,
                "Drive": drive, "NALPath": nal_path(host, site_code), "ObjectType": 0,
                "PercentFree": int(100 * free / total), "PkgSharePriority": 1, "SiteCode": site_code,
                "Status": 0,
            })
    if rows:
        rows.append({**rows[0], "Drive": "E:", "BytesFree": 0, "BytesTotal": -1, "PercentFree": 0})
        rows[1]["SiteCode"] = ""
    return rows


def make_dp_groups(site_code: str, servers: int, seed: int) -> tuple[list[Row], list[Row]]:
    """SMS_DistributionPointGroup and SMS_DPGroupMembers instances: "All DPs" (every DP), a region of
    about half the DPs (``NASTY_GROUP_NAME``), "PXE DPs" (DP01) and an empty group; counts as the
    class has them (one group out of sync), one group with nil counts.
    """
    rng = random.Random(f"{site_code}:{seed}:{DP_GROUP}")
    hosts = [dp_host(site_code, index) for index in range(1, servers + 1)]
    region = [h for h in hosts if rng.random() < 0.5] or hosts[:1]
    layout: tuple[tuple[str, list[str]], ...] = (
        ("All DPs", hosts), (NASTY_GROUP_NAME, region), ("PXE DPs", hosts[:1]), ("Not yet used", []),
    )
    groups: list[Row] = []
    members: list[Row] = []
    for number, (name, group_hosts) in enumerate(layout, 1):
        group_id = f"{{{site_code}{number:05d}-0000-4000-8000-{rng.randrange(16**12):012X}}}"
        groups.append({
            "CollectionCount": rng.randint(0, 5), "ContentCount": rng.randint(5, 60) if group_hosts else 0,
            "ContentInSync": True, "Description": "", "GroupID": group_id, "MemberCount": len(group_hosts),
            "Name": name, "OutOfSyncContentCount": 0, "SourceSite": site_code,
        })
        members += [{"DPNALPath": nal_path(host, site_code), "GroupID": group_id} for host in group_hosts]
    groups[1].update(OutOfSyncContentCount=min(3, groups[1]["ContentCount"]), ContentInSync=False)
    groups[3].update(MemberCount=None, ContentCount=None, OutOfSyncContentCount=None)
    return groups, members


def make_site_classes(site_code: str, packages: int, servers: int, seed: int) -> dict[str, list[Row]]:
    """Every class of a site namespace: SMS_PackageStatus (``make_site``) and the optional collectors'."""
    status = make_site(site_code, packages, servers, seed)
    info = make_package_info(site_code, packages, seed)
    groups, members = make_dp_groups(site_code, servers, seed)
    return {
        PACKAGE_STATUS: status,
        PACKAGE_BASECLASS: info,
        DP_CONTENT_SUMMARIZER: make_dp_content(site_code, status, info, seed),
        DP_INFO: make_dp_info(site_code, servers, seed),
        DP_STATUS: make_dp_status(site_code, status, servers, seed),
        DP_DRIVE: make_dp_drives(site_code, servers, seed),
        DP_GROUP: groups,
        DP_GROUP_MEMBERS: members,
    }


def three_site_dataset() -> Dataset:
    """The suite's standard data set: sites ABC, DEF, GHI on one provider (``CM01``), ~2,900 status rows.

    ``root\\SMS`` holds SMS_ProviderLocation (ABC is the local site); each
    ``root\\SMS\\site_<CODE>`` holds that site's SMS_PackageStatus and the optional collectors'
    classes (``make_site_classes``).  A new dict each call, so a test may mutate its copy.
    """
    codes = [code for code, _, _, _ in THREE_SITES]
    data: Dataset = {"root\\SMS": {PROVIDER_LOCATION: provider_locations(codes, PROVIDER_MACHINE)}}
    for code, packages, servers, seed in THREE_SITES:
        data[site_namespace(code)] = make_site_classes(code, packages, servers, seed)
    return data


def single_site_dataset(site_code: str = "ABC", packages: int = 40, servers: int = 6, seed: int = 1) -> Dataset:
    """A one-site data set (provider location plus the site's classes) for small, fast tests."""
    return {
        "root\\SMS": {PROVIDER_LOCATION: provider_locations([site_code], PROVIDER_MACHINE)},
        site_namespace(site_code): make_site_classes(site_code, packages, servers, seed),
    }
