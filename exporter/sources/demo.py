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

The rows are a pure function of (seed, time): `DemoSite.rows_at(t)`. `DemoSource` memoises it
per package, so that a poll only rebuilds the packages whose rows changed since the last one.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from exporter.config import TargetConfig
from exporter.rows import TYPE_COPY, TYPE_MASTER, PackageStatusRow

DEFAULT_SITE_CODE = "DEM"
DOMAIN = "demo.example.com"
SITE_SERVER = "CM01"

SENT, RECEIVED, INSTALLED, RETRY, FAILED, REMOVED, PENDING_REMOVE = 1, 2, 3, 4, 5, 6, 7

_HOUR = 3600
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
        return cls(site_code=site_code, seed=seed, master=master, servers=dps, packages=pkgs)

    def rows_at(self, t: float) -> list[PackageStatusRow]:
        """Every row at Unix time `t`: per package the MASTER row, then a COPY row per DP."""
        rows: list[PackageStatusRow] = []
        for index in range(len(self.packages)):
            rows.extend(self.snapshot(index, t, None).rows)
        return rows

    def snapshot(self, index: int, t: float, last: _Snapshot | None) -> _Snapshot:
        """Package `index`'s rows at `t`, reusing what `last` (an earlier snapshot) still holds."""
        package = self.packages[index]
        number = math.floor((t + package.phase) / package.period)
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
        # An integer seed gives the same sequence on every Python version and platform.
        draw = random.Random((self.seed * 1_000_003 + index) * 1_000_033 + number).random
        size = package.size * (0.8 + 0.45 * draw())  # versions differ a little in size
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


class DemoSource:
    """A `Source` serving a `DemoSite` at the clock's time (wall-clock unless a test gives one)."""

    def __init__(self, target: TargetConfig, clock: Callable[[], float] = time.time) -> None:
        seed = target.seed if target.seed is not None else default_seed(target.name)
        self.site = DemoSite.build(target.site_code or DEFAULT_SITE_CODE, target.packages, target.servers, seed)
        self._clock = clock
        # Per package, the last snapshot: between two polls only a few packages change, and
        # their unchanged rows are reused as they are.
        self._snapshots: list[_Snapshot | None] = [None] * len(self.site.packages)

    def rows(self, deadline: float) -> Iterator[PackageStatusRow]:
        # No deadline check: even a 2000 x 200 site takes under a second on its first poll and
        # tens of milliseconds after that.
        yield from self.rows_at(self._clock())

    def rows_at(self, t: float) -> list[PackageStatusRow]:
        """Equal to `self.site.rows_at(t)`, computed from the previous poll's snapshots."""
        rows: list[PackageStatusRow] = []
        for index, last in enumerate(self._snapshots):
            snapshot = self.site.snapshot(index, t, last)
            self._snapshots[index] = snapshot
            rows.extend(snapshot.rows)
        return rows

    def site_code(self) -> str | None:
        return self.site.site_code

    def close(self) -> None:
        """Nothing to release."""
