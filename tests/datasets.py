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
"""

from __future__ import annotations

import random
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


def three_site_dataset() -> Dataset:
    """The suite's standard data set: sites ABC, DEF, GHI on one provider (``CM01``), ~2,900 rows.

    ``root\\SMS`` holds SMS_ProviderLocation (ABC is the local site); each
    ``root\\SMS\\site_<CODE>`` holds that site's SMS_PackageStatus.  A new dict each call, so a
    test may mutate its copy.
    """
    codes = [code for code, _, _, _ in THREE_SITES]
    data: Dataset = {"root\\SMS": {"SMS_ProviderLocation": provider_locations(codes, PROVIDER_MACHINE)}}
    for code, packages, servers, seed in THREE_SITES:
        data[site_namespace(code)] = {"SMS_PackageStatus": make_site(code, packages, servers, seed)}
    return data


def single_site_dataset(site_code: str = "ABC", packages: int = 40, servers: int = 6, seed: int = 1) -> Dataset:
    """A one-site data set (provider location plus the site's rows) for small, fast tests."""
    return {
        "root\\SMS": {"SMS_ProviderLocation": provider_locations([site_code], PROVIDER_MACHINE)},
        site_namespace(site_code): {"SMS_PackageStatus": make_site(site_code, packages, servers, seed)},
    }
