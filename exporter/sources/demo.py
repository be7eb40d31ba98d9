"""A simulated site whose `SMS_PackageStatus` rows move over time: the exporter, dashboard and
alerts can be tried without Windows.

The site has one site server (`CM01.demo.example.com`, holding the MASTER row of each package)
and `servers` distribution points (`DP01.demo.example.com`, ... holding the COPY rows). Every
package gets a new version now and then (every 2 to 16 hours, a fixed period per package);
Distribution Manager then sends it to every DP at once: each COPY row goes `sent` -> `received`
-> `installed` within minutes, the time scaled by the package's size and the DP's link. Some
distributions go to `retry` and end `installed` or `failed` (a few DPs are flaky and fail more
often); now and then a DP's copy is removed (`pending_remove` -> `removed`) until the next
version. `UpdateTime` is when the row last changed status, and the MASTER row's is when the
version was created. At any moment most rows are `installed`, a few percent are in flight,
retrying or failed, as on a healthy site.

The optional collectors' classes describe the same site at the same moment:

* `SMS_PackageBaseclass` (`package_info`): each package has a ConfigMgr-like name, version and
  PackageType (the built-in client, USMT and boot image packages first, then a mix of
  applications, packages, driver packages, software update packages, task sequences, OS images and
  upgrade packages). `SourceVersion` rises with every version of the simulation (1 when the
  package was created, some time in the first months of 2024), `SourceDate` is when the current
  version was created (the MASTER row's `UpdateTime`) and the size follows the package's type,
  the simulated transfer size and the version.
* `SMS_PackageStatusDistPointsSummarizer` (`dp_content_state`): one row per COPY row, with the
  console's state of it (`installed`; `sent`/`received` install pending, `retry` install
  retrying, `failed` install failed, `pending_remove` and `removed` removal pending). On a real
  site a finished removal deletes both rows; the simulation keeps its `removed` COPY rows until
  the next version, and its summary then shows the removal as still pending, as a summariser
  that has not run since would. `LastCopied` is when the current version was installed on the
  DP, nil while it is not (yet) there.
* `SMS_DistributionPointInfo` (`dp_info`): the DPs, a third of them pull DPs (the slowest links:
  branch offices), about half answering PXE, a few doing multicast, one in fifteen (at least one
  from six DPs on) facing the internet, most in two or three DP groups.

The rows are pure functions of (seed, time): `DemoSite.rows_at(t)`, `package_info_at(t)`,
`dp_content_at(t)` and `distribution_points`. `DemoSource` answers a query for any of these classes
as a provider would, with the instances' property text (`exporter.wmi.Item`), which the collectors
read like any other source's; it memoises the status rows per package, so that a poll only
rebuilds the packages whose rows changed since the last one; the other classes read those
snapshots only as hints (see `DemoSource`), so that the collectors may read at once.
"""

from __future__ import annotations

import math
import random
import time
import uuid
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

from exporter.collectors import dp_content_state, dp_drive, dp_groups, dp_info, dp_status, package_info
from exporter.collectors.dp_content_state import DPContentRow
from exporter.collectors.dp_drive import DriveRow
from exporter.collectors.dp_groups import GroupRow, MemberRow
from exporter.collectors.dp_info import DPInfoRow
from exporter.collectors.dp_status import DPStatusRow
from exporter.collectors.package_info import PackageInfoRow
from exporter.collectors.package_status.row import CLASS_NAME as PACKAGE_STATUS
from exporter.collectors.package_status.row import TYPE_COPY, TYPE_MASTER, PackageStatusRow
from exporter.config import TargetConfig
from exporter.errors import PollError
from exporter.wmi import Item, ItemsPage, Page, Query

DEFAULT_SITE_CODE = "DEM"
DOMAIN = "demo.example.com"
SITE_SERVER = "CM01"

SENT, RECEIVED, INSTALLED, RETRY, FAILED, REMOVED, PENDING_REMOVE = 1, 2, 3, 4, 5, 6, 7

_HOUR = 3600
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WBEM_E_INVALID_CLASS = 0x80041010  # what a provider answers for a class it does not have
_PERIOD_RANGE = (2 * _HOUR, 16 * _HOUR)  # between two versions of one package
_SIZE_RANGE = (-2.0, 3.0)  # log2 of a package's size, relative: 0.25 to 8
_LINK_RANGE = (0.5, 2.5)  # how slow a DP's link is, relative
_FAIL_RATE, _FLAKY_FAIL_RATE = 0.03, 0.25  # chance that one distribution to a DP retries
_FAILED_AFTER_RETRY = 0.4  # chance that a retrying distribution ends failed
_REMOVE_RATE = 0.01  # chance, per version and DP, that its copy is removed


@dataclass(frozen=True, slots=True)
class _Server:
    host: str
    nal: str  # PkgServer as the SMS Provider writes it
    link: float  # multiplies transfer times
    fail_rate: float


@dataclass(frozen=True, slots=True)
class _Package:
    package_id: str
    period: int  # seconds between versions
    phase: int  # seconds; spreads the packages' versions over time
    size: float  # multiplies transfer times


@dataclass(frozen=True, slots=True)
class _Version:
    """One package version's distribution: for each DP, the times of its status changes."""

    number: int
    start: int
    end: int  # start of the next version
    times: tuple[tuple[int, ...], ...]  # per DP, ascending; the first is `start`
    statuses: tuple[tuple[int, ...], ...]  # per DP, the status from each time on


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A package's rows at some time, and the interval over which they stay the same."""

    version: _Version
    valid_from: float
    valid_until: float
    positions: tuple[int, ...]  # per DP, the index of its current event
    rows: tuple[PackageStatusRow, ...]  # the MASTER row, then one COPY row per DP


def nal_path(host: str, site_code: str) -> str:
    """`PkgServer` of a server as ConfigMgr writes it (a NAL path; see the spec)."""
    return f'["Display=\\\\{host}\\"]MSWNET:["SMS_SITE={site_code}"]\\\\{host}\\'


def default_seed(target_name: str) -> int:
    """A seed that is stable across runs and Python versions (`hash()` is salted per process)."""
    return zlib.crc32(target_name.encode("utf-8"))


@dataclass(frozen=True)
class DemoSite:
    """The fixed part of the simulation: servers and packages, drawn from the seed."""

    site_code: str
    seed: int
    master: _Server
    servers: tuple[_Server, ...]
    packages: tuple[_Package, ...]
    catalog: tuple[_CatalogEntry, ...]  # per package: what SMS_PackageBaseclass says of it
    distribution_points: tuple[DPInfoRow, ...]  # per DP: its SMS_DistributionPointInfo row
    groups: tuple[_Group, ...]  # the DP groups, each with its members (DP indexes)
    drives: tuple[tuple[DriveRow, ...], ...]  # per DP: its drives

    @classmethod
    def build(cls, site_code: str, packages: int, servers: int, seed: int) -> DemoSite:
        rng = random.Random(seed)
        width = max(2, len(str(servers)))
        flaky = set(rng.sample(range(servers), max(1, servers // 8))) if servers else set()
        dps = tuple(
            _Server(
                host=(host := f"DP{n + 1:0{width}d}.{DOMAIN}"),
                nal=nal_path(host, site_code),
                link=rng.uniform(*_LINK_RANGE) * (1.5 if n in flaky else 1.0),
                fail_rate=_FLAKY_FAIL_RATE if n in flaky else _FAIL_RATE,
            )
            for n in range(servers)
        )
        master_host = f"{SITE_SERVER}.{DOMAIN}"
        master = _Server(host=master_host, nal=nal_path(master_host, site_code), link=1.0, fail_rate=0.0)
        pkgs = tuple(
            _Package(
                package_id=f"{site_code}{n + 1:05X}",  # ConfigMgr IDs: site code + 5 hex digits
                period=(period := rng.randrange(*_PERIOD_RANGE)),
                phase=rng.randrange(period),
                size=2.0 ** rng.uniform(*_SIZE_RANGE),
            )
            for n in range(packages)
        )
        # Drawn from streams of their own, so that the status rows are the same with or without them.
        return cls(
            site_code=site_code, seed=seed, master=master, servers=dps, packages=pkgs,
            catalog=_catalog(seed, pkgs),
            distribution_points=(points := _distribution_points(site_code, seed, dps))[0],
            groups=points[1],
            drives=_drives(site_code, seed, dps),
        )

    def rows_at(self, t: float) -> list[PackageStatusRow]:
        """Every row at Unix time `t`: per package the MASTER row, then a COPY row per DP."""
        rows: list[PackageStatusRow] = []
        for index in range(len(self.packages)):
            rows.extend(self.snapshot(index, t, None).rows)
        return rows

    def snapshot(self, index: int, t: float, last: _Snapshot | None) -> _Snapshot:
        """Package `index`'s rows at `t`, reusing what `last` (an earlier snapshot) still holds."""
        package = self.packages[index]
        number = _number(package, t)
        if last is None or last.version.number != number:
            last, version = None, self._version(index, number)
        elif last.valid_from <= t < last.valid_until:
            return last
        else:
            version = last.version
        at = max(t, version.start)  # `t` may sit a rounding error before `start`
        positions = tuple([bisect_right(times, at) - 1 for times in version.times])
        pairs = list(zip(version.times, positions, strict=True))
        return _Snapshot(
            version=version,
            valid_from=max([times[p] for times, p in pairs], default=version.start),
            valid_until=min([times[p + 1] for times, p in pairs if p + 1 < len(times)], default=version.end),
            positions=positions,
            rows=self._rows(package, version, positions, last),
        )

    def _rows(
        self, package: _Package, version: _Version, positions: tuple[int, ...], last: _Snapshot | None
    ) -> tuple[PackageStatusRow, ...]:
        """The MASTER row and the COPY rows; a COPY row whose DP has not moved since `last` is
        reused as it is, so that a poll allocates only for the rows that changed."""
        # Positional arguments (personality 0 is NONE): this builds every row of a new site, and
        # keywords cost more.
        new_row = partial(PackageStatusRow, self.site_code, package.package_id)
        fresh = zip(self.servers, version.times, version.statuses, positions, strict=True)
        if last is None:
            # The site server holds the version from its creation: installed, never in flight.
            master = new_row(self.master.host, TYPE_MASTER, INSTALLED, 0, float(version.start), self.master.nal)
            copies = [
                new_row(server.host, TYPE_COPY, statuses[p], 0, float(times[p]), server.nal)
                for server, times, statuses, p in fresh
            ]
        else:
            master = last.rows[0]
            copies = [
                old if p == old_p else new_row(server.host, TYPE_COPY, statuses[p], 0, float(times[p]), server.nal)
                for (server, times, statuses, p), old_p, old in zip(fresh, last.positions, last.rows[1:], strict=True)
            ]
        return (master, *copies)

    def _version(self, index: int, number: int) -> _Version:
        """Draw version `number` of package `index`: a pure function of (seed, index, number).

        Written as comprehensions over all DPs at once, with extra draws only for the few that
        retry or are removed, because a large demo site draws 2000 x 200 of these at start.
        """
        package = self.packages[index]
        start = number * package.period - package.phase
        end = start + package.period
        draw = self._draws(index, number)
        size = package.size * _version_scale(draw)  # the first draw: `package_info_at` reads it too
        send, install = 180 * size, round(30 + 60 * size)
        received = [start + round((60 + send * dp.link) * (0.7 + 0.6 * draw())) for dp in self.servers]
        done = [at + round(install * (0.7 + 0.6 * draw())) for at in received]
        times: list[tuple[int, ...]] = [(start, at, fin) for at, fin in zip(received, done, strict=True)]
        statuses: list[tuple[int, ...]] = [_DELIVERED] * len(times)
        for dp in [dp for dp, server in enumerate(self.servers) if draw() < server.fail_rate]:
            times[dp], statuses[dp] = _retry(draw, times[dp])
        for dp in [dp for dp in range(len(times)) if draw() < _REMOVE_RATE]:
            times[dp], statuses[dp] = _remove(draw, times[dp], statuses[dp], package.period)
        # A version's story is cut short by the next one, which starts over with `sent`.
        for dp, dp_times in enumerate(times):
            if dp_times[-1] >= end:
                kept = bisect_right(dp_times, end - 1)
                times[dp], statuses[dp] = dp_times[:kept], statuses[dp][:kept]
        return _Version(number=number, start=start, end=end, times=tuple(times), statuses=tuple(statuses))

    def _draws(self, index: int, number: int) -> Callable[[], float]:
        """The random draws of version `number` of package `index`, from their start."""
        # An integer seed gives the same sequence on every Python version and platform.
        return random.Random((self.seed * 1_000_003 + index) * 1_000_033 + number).random

    # --- the optional collectors' classes -------------------------------------------------------

    def package_info_at(self, t: float) -> list[PackageInfoRow]:
        """Every package's `SMS_PackageBaseclass` row at Unix time `t`: the version in force then."""
        rows: list[PackageInfoRow] = []
        for index, (package, entry) in enumerate(zip(self.packages, self.catalog, strict=True)):
            number = _number(package, t)
            rows.append(PackageInfoRow(
                package_id=package.package_id,
                name=entry.name,
                version=entry.version,
                package_type=entry.package_type,
                source_version=max(1, number - entry.first_version + 1),
                source_date=float(number * package.period - package.phase),  # the version's start
                # One draw, not the whole version: its first is its size.
                size_bytes=round(entry.size_kb * _version_scale(self._draws(index, number))) * 1024,
            ))
        return rows

    def dp_content_at(self, t: float, hints: Sequence[_Snapshot | None] | None = None) -> Iterator[DPContentRow]:
        """Every `SMS_PackageStatusDistPointsSummarizer` row at `t`: per package and DP, the console's
        state of its COPY row at `t`. `hints` (per package, an earlier snapshot or None) only spare
        recomputing what they still hold; the rows are the same whatever they are.

        Yielded package by package, not as one list: the rows are new objects on every call, and a
        consumer that drops them as they come (an aggregate) then leaves the garbage collector
        nothing to do, where a list of 400,000 made it walk the whole heap several times."""
        for index in range(len(self.packages)):
            yield from self._content_rows(self.snapshot(index, t, None if hints is None else hints[index]))

    def dp_status_at(self, t: float, hints: Sequence[_Snapshot | None] | None = None) -> list[DPStatusRow]:
        """Every DP's `SMS_DPStatusInfo` row at `t`: its COPY rows counted by state (installed; sent,
        received or retrying: in progress; failed: error; being removed: unknown), the console's state
        (error when any failed, else in progress when any is on its way, else success) and its
        latest status message (the newest UpdateTime of its COPY rows)."""
        counts = [[0, 0, 0, 0] for _ in self.servers]
        latest: list[float | None] = [None] * len(self.servers)
        for index in range(len(self.packages)):
            snapshot = self.snapshot(index, t, None if hints is None else hints[index])
            for dp, row in enumerate(snapshot.rows[1:]):
                counts[dp][_DP_STATE_COUNT[row.status]] += 1
                moment = latest[dp]
                if row.update_time is not None and (moment is None or row.update_time > moment):
                    latest[dp] = row.update_time
        rows = []
        for dp, server in enumerate(self.servers):
            installed, in_progress, errors, unknown = counts[dp]
            state = _DP_ERROR if errors else _DP_IN_PROGRESS if in_progress else _DP_SUCCESS
            rows.append(DPStatusRow(self.site_code, server.host, state, latest[dp], installed, in_progress, errors,
                                    unknown, monitored=not self.distribution_points[dp].pull))
        return rows

    def groups_at(self, t: float, hints: Sequence[_Snapshot | None] | None = None) -> list[GroupRow]:
        """Every DP group's `SMS_DistributionPointGroup` row at `t`: every package is assigned to every
        group (Distribution Manager sends each to every DP), and is out of sync in a group while a
        member's COPY row of it is not installed."""
        out_of_sync = [0] * len(self.groups)
        for index in range(len(self.packages)):
            snapshot = self.snapshot(index, t, None if hints is None else hints[index])
            behind = {dp for dp, row in enumerate(snapshot.rows[1:]) if row.status != INSTALLED}
            for number, group in enumerate(self.groups):
                if behind.intersection(group.members):
                    out_of_sync[number] += 1
        return [GroupRow(group.group_id, group.name, len(group.members), len(self.packages), late)
                for group, late in zip(self.groups, out_of_sync, strict=True)]

    def members(self) -> list[MemberRow]:
        """Every `SMS_DPGroupMembers` row: one per (group, member DP)."""
        return [MemberRow(group.group_id, self.site_code, self.servers[dp].host)
                for group in self.groups for dp in group.members]

    def _content_rows(self, snapshot: _Snapshot) -> list[DPContentRow]:
        """The summariser's rows of one package, one per COPY row of the snapshot."""
        site, package_id = self.site_code, snapshot.rows[0].package_id
        # tuple.__new__, not the NamedTuple's constructor (a Python function): this builds a row
        # per package and DP on every poll, and the extra call was a third of the time.
        new = tuple.__new__
        rows: list[DPContentRow] = []
        append = rows.append
        for dp, (_, _, server, _, status, _, update_time, _) in enumerate(snapshot.rows[1:]):
            if status == INSTALLED:
                append(new(DPContentRow, (site, package_id, server, _STATE_INSTALLED, update_time)))
            elif status in (PENDING_REMOVE, REMOVED):
                # A copy is removed only once settled: LastCopied is when it was installed, if it was.
                times, statuses = snapshot.version.times[dp], snapshot.version.statuses[dp]
                copied = float(times[statuses.index(INSTALLED)]) if INSTALLED in statuses else None
                append(new(DPContentRow, (site, package_id, server, _STATE_REMOVAL_PENDING, copied)))
            else:  # on its way or failing: this version is not there yet
                append(new(DPContentRow, (site, package_id, server, _CONTENT_STATES[status], None)))
        return rows


def _number(package: _Package, t: float) -> int:
    """The number of `package`'s version in force at `t`."""
    return math.floor((t + package.phase) / package.period)


def _version_scale(draw: Callable[[], float]) -> float:
    """A version's size relative to its package's: versions differ a little."""
    return 0.8 + 0.45 * draw()


_DELIVERED: tuple[int, ...] = (SENT, RECEIVED, INSTALLED)
Timeline = tuple[tuple[int, ...], tuple[int, ...]]


def _retry(draw: Callable[[], float], times: tuple[int, ...]) -> Timeline:
    """The install step fails; the DP retries for a while and ends installed or failed."""
    start, received, done = times
    retried = done + round((0.5 + 2.5 * draw()) * _HOUR)
    outcome = FAILED if draw() < _FAILED_AFTER_RETRY else INSTALLED
    return (start, received, done, retried), (SENT, RECEIVED, RETRY, outcome)


def _remove(draw: Callable[[], float], times: tuple[int, ...], statuses: tuple[int, ...], period: int) -> Timeline:
    """The copy is removed from the DP late in the version's life, if it has settled by then."""
    pending = times[0] + round((0.5 + 0.4 * draw()) * period)
    removed = pending + round(120 + 1080 * draw())
    if pending <= times[-1]:
        return times, statuses
    return (*times, pending, removed), (*statuses, PENDING_REMOVE, REMOVED)


# --- SMS_PackageBaseclass and SMS_DistributionPointInfo: what the site holds -----------------------

_SITE_CREATED = datetime(2024, 1, 1, tzinfo=UTC).timestamp()  # packages come in its first 120 days
_CREATED_SPREAD = 120 * 24 * _HOUR

# PackageType (exporter.collectors.package_info.PACKAGE_TYPE_NAMES).
REGULAR, DRIVER, TASK_SEQUENCE, SOFTWARE_UPDATE, VIRTUAL_APP, APPLICATION = 0, 3, 4, 5, 7, 8
IMAGE, BOOT_IMAGE, OS_UPGRADE = 257, 258, 259


@dataclass(frozen=True, slots=True)
class _CatalogEntry:
    """A package's `SMS_PackageBaseclass` properties apart from those that move with its versions."""

    name: str
    version: str
    package_type: int
    size_kb: float  # content size of a version of the package's usual size
    first_version: int  # the version number that is SourceVersion 1


# (Name, Version, typical size in MB); a `#` in a version is a digit drawn per package.
_Named = tuple[str, str, float]

# The packages every site has from its installation, in this order, then the drawn ones.
_BUILT_IN: tuple[tuple[int, _Named], ...] = (
    (REGULAR, ("User State Migration Tool for Windows", "10.0.22621.1", 65)),
    (REGULAR, ("Configuration Manager Client Package", "", 420)),
    (REGULAR, ("Configuration Manager Client Piloting Package", "", 420)),
    (BOOT_IMAGE, ("Boot image (x64)", "10.0.22621.1", 520)),
)
_APPLICATIONS: tuple[_Named, ...] = (
    ("Google Chrome", "12#.0.6###.##", 110), ("Mozilla Firefox ESR", "11#.#.0", 60), ("7-Zip", "2#.0#", 2),
    ("Notepad++", "8.#.#", 5), ("Adobe Acrobat Reader", "2#.00#.2####", 700),
    ("Microsoft Edge", "12#.0.2###.##", 170), ("Microsoft 365 Apps for enterprise", "16.0.17###.2####", 3200),
    ("Microsoft Teams", "", 140), ("Zoom Workplace", "6.#.##", 90), ("VLC media player", "3.0.##", 45),
    ("Cisco Secure Client", "5.1.#.##", 120), ("Citrix Workspace", "24.#.#.##", 300),
    ("Eclipse Temurin JRE 17", "17.0.1#", 45), ("Python 3.12", "3.12.#", 28), ("Git for Windows", "2.4#.#", 65),
    ("Visual Studio Code", "1.9#.#", 100), ("PuTTY", "0.8#", 4), ("WinSCP", "6.#.#", 12),
    ("KeePass Password Safe", "2.5#", 4), ("Greenshot", "1.2.10.#", 2), ("Paint.NET", "5.0.#", 90),
    ("SAP GUI for Windows", "8.00 PL#", 1100), ("Microsoft Power BI Desktop", "2.1##.###.0", 600),
    ("Microsoft Visio LTSC 2021", "", 3000), ("Microsoft Project LTSC 2021", "", 3000),
    ("Autodesk AutoCAD LT 2024", "", 2600), ("Dell Command | Update", "5.#.0", 110),
    ("HP Image Assistant", "5.#.#.##", 30), ("FortiClient VPN", "7.#.#.####", 150), ("Webex", "44.#.#.####", 300),
    ("Slack", "4.3#.##", 110), ("SQL Server Management Studio", "20.#.##.0", 550), ("Wireshark", "4.#.#", 85),
    ("Microsoft Visual C++ 2015-2022 Redistributable (x64)", "14.3#.3####.0", 25),
    ("Microsoft .NET Desktop Runtime 8", "8.0.#", 55), ("Snagit", "2024.#.#", 330),
    ("Microsoft Company Portal", "", 80),
)
_REGULAR: tuple[_Named, ...] = (
    ("PowerShell App Deployment Toolkit", "3.#.#", 3), ("Corporate Wallpaper and Branding", "2024.#", 25),
    ("Printer Drivers - Xerox VersaLink", "5.###.#.#", 180), ("Printer Drivers - HP Universal PCL 6", "7.#.#.####", 40),
    ("BIOS Update - Dell Latitude 5440", "1.1#.0", 35), ("BIOS Update - HP EliteBook 840 G10", "01.0#.##", 30),
    ("BIOS Update - Lenovo ThinkPad T14 Gen 4", "1.##", 40), ("Windows 11 Language Pack - de-DE", "", 600),
    ("Windows 11 Language Pack - fr-FR", "", 600), ("Windows 11 Features on Demand", "", 1800),
    ("MDT Toolkit Package", "6.3.8456.1000", 20), ("MDT Settings Package", "", 0.2),
    ("Scripts - Helpdesk Toolkit", "#.#", 1), ("Microsoft Defender for Endpoint Onboarding", "", 0.05),
)
_DRIVERS: tuple[_Named, ...] = tuple(
    (f"Drivers - {model} - Windows {os} x64", "", size)
    for model, size in (
        ("Dell Latitude 5440", 1400), ("Dell Latitude 7440", 1500), ("Dell OptiPlex 7010", 900),
        ("Dell Precision 3581", 2200), ("HP EliteBook 840 G10", 1300), ("HP ProBook 450 G9", 1100),
        ("HP EliteDesk 800 G9", 800), ("Lenovo ThinkPad T14 Gen 4", 1000), ("Lenovo ThinkPad X1 Carbon Gen 11", 900),
        ("Lenovo ThinkCentre M70q Gen 4", 600), ("Microsoft Surface Laptop 5", 700), ("Microsoft Surface Pro 9", 750),
    )
    for os in ("11", "10")
)
_SOFTWARE_UPDATES: tuple[_Named, ...] = (
    ("Software Updates - Workstations - 2024", "", 6000), ("Software Updates - Servers - 2024", "", 4000),
    ("Software Updates - Workstations - 2023", "", 8000), ("Windows 11 Cumulative Updates", "", 3500),
    ("Microsoft 365 Apps Updates", "", 2500), ("Endpoint Protection Definition Updates", "", 150),
    ("Microsoft Edge Updates", "", 700), (".NET Framework Updates", "", 400), ("Third-Party Updates", "", 900),
    ("Windows Server 2022 Updates", "", 2000),
)
_TASK_SEQUENCES: tuple[_Named, ...] = tuple(  # a task sequence has no content of its own
    (name, "", 0)
    for name in (
        "Deploy Windows 11 23H2 x64", "Deploy Windows 11 24H2 x64", "Windows 11 24H2 In-Place Upgrade",
        "Build and Capture - Windows 11 Enterprise", "Deploy Windows Server 2022", "BIOS to UEFI Conversion",
        "Refresh - Windows 11 with USMT", "Driver Update - All Models",
    )
)
_IMAGES: tuple[_Named, ...] = (
    ("Windows 11 Enterprise 23H2 x64", "10.0.22631.3###", 5200),
    ("Windows 11 Enterprise 24H2 x64", "10.0.26100.2###", 5600),
    ("Windows 10 Enterprise 22H2 x64", "10.0.19045.4###", 4600),
    ("Windows Server 2022 Standard", "10.0.20348.2###", 5000),
)
_OS_UPGRADES: tuple[_Named, ...] = (
    ("Windows 11 23H2 Upgrade Package", "10.0.22631.3###", 4800),
    ("Windows 11 24H2 Upgrade Package", "10.0.26100.2###", 5200),
)
_BOOT_IMAGES: tuple[_Named, ...] = (
    ("WinPE 11 x64 - PXE", "10.0.26100.1", 560), ("WinPE 11 x64 - Media", "10.0.26100.1", 600),
)
_VIRTUAL_APPS: tuple[_Named, ...] = (
    ("Microsoft Visio 2016 (App-V)", "", 1400), ("Legacy ERP Client (App-V)", "4.2", 300),
    ("Adobe Photoshop Elements (App-V)", "", 2500),
)

# The packages after the built-in ones: (PackageType, weight, names).
_KINDS: tuple[tuple[int, int, tuple[_Named, ...]], ...] = (
    (APPLICATION, 40, _APPLICATIONS),
    (REGULAR, 14, _REGULAR),
    (DRIVER, 12, _DRIVERS),
    (SOFTWARE_UPDATE, 12, _SOFTWARE_UPDATES),
    (TASK_SEQUENCE, 7, _TASK_SEQUENCES),
    (IMAGE, 5, _IMAGES),
    (OS_UPGRADE, 4, _OS_UPGRADES),
    (VIRTUAL_APP, 4, _VIRTUAL_APPS),
    (BOOT_IMAGE, 2, _BOOT_IMAGES),
)
_KIND_WEIGHTS = [weight for _, weight, _ in _KINDS]


def _catalog(seed: int, packages: Sequence[_Package]) -> tuple[_CatalogEntry, ...]:
    """Each package's name, version, type and usual size, drawn in package order, so that a larger
    site with the same seed starts with the same packages.

    Names are dealt from a shuffled deck per type; when a deck runs out it is dealt again. A name
    that comes back with a version already used gets the number of its round (`Drivers - ...
    (2)`), as an admin's copies do, so that no two packages have the same name and version."""
    rng = random.Random(f"{seed}/package-info")  # a str seed is stable on every Python too
    decks: dict[int, list[_Named]] = {}
    rounds: dict[int, int] = {}
    used: set[tuple[str, str]] = set()
    entries = []
    for index, package in enumerate(packages):
        if index < len(_BUILT_IN):
            package_type, (name, template, megabytes) = _BUILT_IN[index]
            created = _SITE_CREATED
        else:
            package_type, _, names = rng.choices(_KINDS, weights=_KIND_WEIGHTS)[0]
            deck = decks.setdefault(package_type, [])
            if not deck:
                deck.extend(rng.sample(names, len(names)))
                rounds[package_type] = rounds.get(package_type, 0) + 1
            name, template, megabytes = deck.pop()
            created = _SITE_CREATED + rng.uniform(0, _CREATED_SPREAD)
        version = "".join(str(rng.randrange(10)) if c == "#" else c for c in template)
        if (name, version) in used:  # a name comes once per round: with its round, it is new
            name = f"{name} ({rounds[package_type]})"
        used.add((name, version))
        # The larger the package's simulated transfers, the larger its content: from 0.7 to 1.4
        # times its name's typical size.
        low, high = _SIZE_RANGE
        scale = 2.0 ** ((math.log2(package.size) - low) / (high - low) - 0.5)
        entries.append(_CatalogEntry(
            name=name,
            version=version,
            package_type=package_type,
            size_kb=megabytes * 1024 * scale,
            first_version=_number(package, created),
        ))
    return tuple(entries)


_PULL_SHARE = 1 / 3  # the DPs with the slowest links: branch offices pulling from a source DP
_PXE_SHARE = 0.45
_NO_GROUP_RATE = 0.05  # DPs added lately, in no group yet
_ALL_DPS, _PXE_DPS, _PROJECT = "All distribution points", "PXE distribution points", "Windows 11 rollout"
_REGIONS = ("Region North", "Region South", "Region West")
_GROUP_NAMES = (_ALL_DPS, *_REGIONS, _PXE_DPS, _PROJECT)
# SMS_DPStatusInfo.MessageState, and which of its counts a COPY row's Status falls in.
_DP_SUCCESS, _DP_IN_PROGRESS, _DP_ERROR = 1, 2, 3
_DP_STATE_COUNT = {INSTALLED: 0, SENT: 1, RECEIVED: 1, RETRY: 1, FAILED: 2, REMOVED: 3, PENDING_REMOVE: 3}
_KB_PER_GIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Group:
    group_id: str
    name: str
    members: tuple[int, ...]  # DP indexes


def _group_id(seed: int, name: str) -> str:
    """A group's `{GUID}`, as ConfigMgr writes it, stable for a seed."""
    return "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"sccm-demo/{seed}/{name}")).upper() + "}"


def _drives(site_code: str, seed: int, servers: Sequence[_Server]) -> tuple[tuple[DriveRow, ...], ...]:
    """Each DP's drives: the system drive and the content library's, its free share drawn per DP
    (one DP in twelve nearly full: the usual reason content stops arriving); now and then a third
    drive whose size the DP does not report (a negative BytesTotal, as the class says unknown)."""
    rng = random.Random(f"{seed}/drives")
    drives = []
    for dp, server in enumerate(servers):
        system_gib = rng.choice((100, 127, 200))
        library_gib = rng.choice((500, 1024, 2048))
        share = rng.uniform(0.04, 0.08) if dp % 12 == 5 else rng.uniform(0.2, 0.7)
        own = [
            DriveRow(site_code, server.host, "C:", round(system_gib * rng.uniform(0.3, 0.6) * _KB_PER_GIB),
                     system_gib * _KB_PER_GIB),
            DriveRow(site_code, server.host, "D:", round(library_gib * share * _KB_PER_GIB), library_gib * _KB_PER_GIB),
        ]
        if rng.random() < 0.1:
            own.append(DriveRow(site_code, server.host, "E:", 0, -1))
        drives.append(tuple(own))
    return tuple(drives)


def _distribution_points(
    site_code: str, seed: int, servers: Sequence[_Server]
) -> tuple[tuple[DPInfoRow, ...], tuple[_Group, ...]]:
    """Each DP's `SMS_DistributionPointInfo` row and the DP groups they are in: a pure function of
    (seed, the DPs' links). A DP's GroupCount is the number of groups it is a member of."""
    rng = random.Random(f"{seed}/dp-info")
    count = len(servers)
    slowest = sorted(range(count), key=lambda dp: servers[dp].link, reverse=True)
    pull = set(slowest[: round(count * _PULL_SHARE)])
    pushed = [dp for dp in range(count) if dp not in pull]
    pxe = set(rng.sample(range(count), round(count * _PXE_SHARE)))
    # Multicast and internet-facing: on DPs that Distribution Manager pushes to (not pull DPs).
    multicast_candidates = [dp for dp in pushed if dp in pxe]
    multicast = set(rng.sample(multicast_candidates, (len(multicast_candidates) + 2) // 4))
    intranet_only = [dp for dp in pushed if dp not in pxe]  # no PXE nor multicast over the internet
    internet = set(rng.sample(intranet_only, min(len(intranet_only), max(1, count // 15)))) if count >= 6 else set()
    # A rare peer DP used to be drawn here; nothing reads IsPeerDP now, but the draw stays so that
    # the draws after it, and so every DP's groups, are what they always were for a seed.
    rng.sample(sorted(pull), min(len(pull), count // 40))
    rows = []
    members: dict[str, list[int]] = {name: [] for name in _GROUP_NAMES}
    for dp, server in enumerate(servers):
        # All DPs; its region, mostly; the PXE DPs; now and then a project's group.
        grouped = rng.random() >= _NO_GROUP_RATE
        region = grouped and rng.random() < 0.85
        project = grouped and rng.random() < 0.15
        chosen = [_ALL_DPS] * grouped + [_REGIONS[dp % len(_REGIONS)]] * region + [_PXE_DPS] * (grouped and dp in pxe)
        chosen += [_PROJECT] * project
        for name in chosen:
            members[name].append(dp)
        rows.append(DPInfoRow(
            site=site_code, server=server.host, pull=dp in pull, pxe=dp in pxe, multicast=dp in multicast,
            internet_facing=dp in internet, groups=len(chosen),
        ))
    groups = tuple(_Group(_group_id(seed, name), name, tuple(dps)) for name, dps in members.items() if dps)
    return tuple(rows), groups


# SMS_PackageStatus.Status of a COPY row -> the console's state of the package on the DP
# (exporter.collectors.dp_content_state.STATE_NAMES). `removed`: see the module's docstring.
_STATE_INSTALLED, _STATE_REMOVAL_PENDING = 0, 4
_CONTENT_STATES: dict[int, int] = {
    SENT: 1, RECEIVED: 1, INSTALLED: _STATE_INSTALLED, RETRY: 2, FAILED: 3,
    PENDING_REMOVE: _STATE_REMOVAL_PENDING, REMOVED: _STATE_REMOVAL_PENDING,
}


def _datetime(moment: float | None) -> str | None:
    """A Unix time as WS-Management writes a WMI datetime (`2024-05-01T10:22:33.5Z`), nil as None.

    The fraction is written with the digits of the float's shortest repr, which `parse_datetime`
    reads back to the same float.
    """
    if moment is None:
        return None
    exact = Decimal(repr(float(moment)))
    whole = math.floor(exact)
    fraction = format(exact - whole, "f").partition(".")[2].rstrip("0")
    stamp = (_EPOCH + timedelta(seconds=whole)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _integer(value: int | None) -> str | None:
    return None if value is None else str(value)


def status_item(row: PackageStatusRow) -> Item:
    return {
        "PackageID": row.package_id, "PkgServer": row.pkg_server, "Personality": str(row.personality),
        "SiteCode": row.site, "Status": str(row.status), "Type": str(row.type),
        "UpdateTime": _datetime(row.update_time),
    }


def package_item(row: PackageInfoRow) -> Item:
    return {
        "PackageID": row.package_id, "Name": row.name, "Version": row.version,
        "PackageType": str(row.package_type), "SourceVersion": _integer(row.source_version),
        "SourceDate": _datetime(row.source_date),
        "PackageSize": None if row.size_bytes is None else str(row.size_bytes // 1024),
    }


def content_item(row: DPContentRow) -> Item:
    return {
        "PackageID": row.package_id, "ServerNALPath": nal_path(row.server, row.site), "SiteCode": row.site,
        "State": str(row.state), "LastCopied": _datetime(row.last_copied),
    }


def dp_status_item(row: DPStatusRow) -> Item:
    return {
        "NALPath": nal_path(row.server, row.site), "Name": row.server, "MessageState": _integer(row.state),
        "LastStatusTime": _datetime(row.last_status), "NumberErrors": str(row.errors),
        "NumberInProgress": str(row.in_progress), "NumberInstalled": str(row.installed),
        "NumberUnknown": str(row.unknown), "IsDPMonEnabled": _flag(row.monitored),
    }


def drive_item(row: DriveRow) -> Item:
    return {
        "NALPath": nal_path(row.server, row.site), "SiteCode": row.site, "Drive": row.drive,
        "BytesFree": _integer(row.free_kb), "BytesTotal": _integer(row.total_kb),
    }


def group_item(row: GroupRow) -> Item:
    return {
        "GroupID": row.group_id, "Name": row.name, "MemberCount": _integer(row.members),
        "ContentCount": _integer(row.packages), "OutOfSyncContentCount": _integer(row.out_of_sync),
    }


def member_item(row: MemberRow) -> Item:
    return {"GroupID": row.group_id, "DPNALPath": nal_path(row.server, row.site)}


def dp_item(row: DPInfoRow) -> Item:
    return {
        "NALPath": nal_path(row.server, row.site), "ServerName": row.server, "SiteCode": row.site,
        "IsPullDP": _flag(row.pull), "IsPXE": _flag(row.pxe), "IsMulticast": _flag(row.multicast),
        "InternetFacing": _flag(row.internet_facing), "GroupCount": _integer(row.groups),
    }


class DemoSource:
    """A `Source` serving a `DemoSite` at the clock's time (wall-clock unless a test gives one).

    The collectors of a poll read at once, from their own threads. Only a read of
    `SMS_PackageStatus` writes (`rows_at`: its per-package snapshots, one list item at a time,
    each an immutable `_Snapshot`); a read of the summarizer reads them as hints, which only spare
    work; the others read nothing that moves. So no lock: no read waits on another, and each
    answers as the pure functions of `DemoSite` would at its own clock reading.
    """

    def __init__(self, target: TargetConfig, clock: Callable[[], float] = time.time) -> None:
        seed = target.seed if target.seed is not None else default_seed(target.name)
        self.site = DemoSite.build(target.site_code or DEFAULT_SITE_CODE, target.packages, target.servers, seed)
        self._clock = clock
        # Per package, the last snapshot: between two polls only a few packages change, and
        # their unchanged rows are reused as they are.
        self._snapshots: list[_Snapshot | None] = [None] * len(self.site.packages)

    def read(self, query: Query, deadline: float) -> Iterator[Page]:
        """The instances of one of the simulated classes, as one page, at the clock's time.

        No deadline check: even a 2000 x 200 site takes under a second on its first poll and
        tens of milliseconds after that. Any other class is refused as a provider refuses it.
        """
        t = self._clock()
        if query.class_name == PACKAGE_STATUS:
            items = [status_item(row) for row in self.rows_at(t)]
        elif query.class_name == package_info.CLASS_NAME:
            items = [package_item(row) for row in self.site.package_info_at(t)]
        elif query.class_name == dp_content_state.CLASS_NAME:
            items = [content_item(row) for row in self.dp_content_state_at(t)]
        elif query.class_name == dp_info.CLASS_NAME:
            items = [dp_item(row) for row in self.site.distribution_points]
        elif query.class_name == dp_status.CLASS_NAME:
            items = [dp_status_item(row) for row in self.site.dp_status_at(t, tuple(self._snapshots))]
        elif query.class_name == dp_drive.CLASS_NAME:
            items = [drive_item(row) for drives in self.site.drives for row in drives]
        elif query.class_name == dp_groups.GROUP_CLASS:
            items = [group_item(row) for row in self.site.groups_at(t, tuple(self._snapshots))]
        elif query.class_name == dp_groups.MEMBER_CLASS:
            items = [member_item(row) for row in self.site.members()]
        else:
            raise PollError("wmi_fault", f"invalid class {query.class_name}: the demo site does not simulate it",
                            wmi_code=_WBEM_E_INVALID_CLASS)
        yield ItemsPage(items, partial(_row_name, query.class_name))

    def rows_at(self, t: float) -> list[PackageStatusRow]:
        """Equal to `self.site.rows_at(t)`, computed from the previous poll's snapshots."""
        rows: list[PackageStatusRow] = []
        for index, last in enumerate(self._snapshots):
            snapshot = self.site.snapshot(index, t, last)
            self._snapshots[index] = snapshot
            rows.extend(snapshot.rows)
        return rows

    def dp_content_state_at(self, t: float) -> Iterator[DPContentRow]:
        """The rows of `self.site.dp_content_at(t)`, helped by the status rows' latest snapshots."""
        return self.site.dp_content_at(t, tuple(self._snapshots))

    def site_code(self) -> str | None:
        return self.site.site_code

    def close(self) -> None:
        """Nothing to release."""


def _row_name(class_name: str, index: int) -> str:
    return f"{class_name} row {index + 1}"
