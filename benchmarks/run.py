"""Benchmark of sccm-package-exporter against the obvious alternative, on synthetic sites over loopback.

    python benchmarks/run.py                 # 10k, 100k, 200k and 1M rows, about 3 minutes
    python benchmarks/run.py --sizes 10k,1m  # some of them (smoke, 10k, 100k, 200k, 1m)
    python benchmarks/run.py --results benchmarks/RESULTS.md   # also write the Markdown report

For each size a synthetic site (benchmarks/synthetic.py: N packages on M distribution points,
N x (M + 1) rows) is served by the loopback WS-Management test server (tests/wsman_server.py,
basic auth over http, pages filling the 512000-byte envelope) in a process of its own, and read:

* by the exporter, in another process, with its defaults (four parallel enumerations). A first
  poll warms the server's caches and the connections; its pages are recorded (to a temporary
  file). Then the process's peak-RSS mark is reset (Linux clear_refs) and `poll` is the median
  of whole polls of the real WinRM source, then /metrics is scraped; `peak RSS` is the process's
  high-water mark over those polls and scrapes. Last, the recorded pages are read again from
  memory: `parse` is pages -> rows (rows/s), `aggregate` counting them in, `render` writing every
  family (text and gzip), `p+a+r` the three together (medians);
* by the naive baseline, in a third process: the same rows from the same source, then module-level
  prometheus_client `Gauge`s filled with `.labels().set()` per series (`fill`), served by
  prometheus_client's own HTTP server, which runs `generate_latest` on every scrape.

Scrapes are timed from this process over real HTTP on loopback (one keep-alive connection, the
whole body read into a reused buffer), without and with `Accept-Encoding: gzip`; `ratio` is the
naive p50 over the exporter's p50. The naive baseline takes seconds per scrape at 100k rows and
more, so it is scraped only a few times there. At 1M rows the poll is also timed with a 20 ms
round trip injected into every request, with one enumeration and with four, to show the latency
they hide. The last table checks the targets of the issue that asked for all this.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

USER, PASSWORD = "bench", "bench-password"
SITE = "BEN"
ENVELOPE = 512_000
DELAY = 0.020  # the injected round trip of the latency run


@dataclass(frozen=True)
class Size:
    label: str
    packages: int
    servers: int  # distribution points; rows = packages * (servers + 1)
    per_row: str
    polls: int  # timed polls, median reported
    scrapes: int  # exporter scrapes per encoding
    naive_scrapes: int  # naive scrapes per encoding
    latency: bool = False  # also time polls with DELAY per request, 1 and 4 enumerations

    @property
    def rows(self) -> int:
        return self.packages * (self.servers + 1)


SIZES = {
    "smoke": Size("2k", 20, 99, "all", 1, 3, 2),
    "10k": Size("10k", 100, 99, "all", 3, 50, 10),
    "100k": Size("100k", 500, 199, "all", 3, 50, 2),
    "200k": Size("200k", 1000, 199, "all", 3, 50, 2),
    "1m": Size("1M", 4000, 249, "not_installed", 3, 50, 2, latency=True),
}
DEFAULT_SIZES = ("10k", "100k", "200k", "1m")


# --- child processes ------------------------------------------------------------------------


def child(role: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, role, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
    )


def read_message(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"child exited with {process.wait()}")
    message: dict[str, Any] = json.loads(line)
    return message


def send(process: subprocess.Popen[str], command: str) -> None:
    assert process.stdin is not None
    process.stdin.write(command + "\n")
    process.stdin.flush()


def say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def peak_rss_mb() -> float:
    """This process's resident set high-water mark (since `reset_peak_rss`), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Start the high-water mark again from the current RSS (Linux 4.0+: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def serve_role(packages: str, servers: str) -> None:
    """The loopback WS-Management server with the synthetic site; commands on stdin."""
    from wsman_server import WSManServer

    from benchmarks.synthetic import dataset

    server = WSManServer(
        dataset(int(packages), int(servers)), users={USER: PASSWORD}, auth=("basic",),
        page_bytes=ENVELOPE, max_envelope_size=ENVELOPE,
    ).start()
    say({"port": server.port})
    for line in sys.stdin:
        command, _, value = line.strip().partition(" ")
        if command == "delay":
            server.delay = float(value)
            say({"delay": server.delay})
        elif command == "requests":
            say({"requests": len(server.requests)})
            server.clear_requests()
        else:
            break
    server.stop()


def target_config(port: int, per_row: str, parallel: int) -> Any:
    from exporter.config import AuthConfig, TargetConfig

    return TargetConfig(
        name="bench", source="winrm", interval=3600, timeout=600, per_row=per_row,  # type: ignore[arg-type]
        stale_after=7200, host="127.0.0.1", port=port, scheme="http", site_code=SITE,
        auth=AuthConfig(transport="basic", username=USER, password=PASSWORD, allow_unencrypted=True),
        parallel_enumerations=parallel,
        # The core table alone, as measured before the optional collectors existed (their cost is
        # benchmarks/collectors.py's); the synthetic site here serves SMS_PackageStatus only.
        collectors=frozenset({"package_status"}),
    )


def exporter_role(port: str, per_row: str, polls: str, latency: str) -> None:
    """The exporter: timed polls, then /metrics for the parent's scrapes, then pages read from memory."""
    from exporter.collectors import SPECS
    from exporter.collectors.package_status.aggregate import PackageStatusAggregate
    from exporter.collectors.package_status.pages import PageReader
    from exporter.collectors.package_status.row import CLASS_NAME, parse_item
    from exporter.collectors.spec import Reader, page_rows
    from exporter.config import Config
    from exporter.server import serve
    from exporter.service import Exporter
    from exporter.winrm import pages
    from exporter.winrm import source as winrm_source
    from exporter.winrm.source import WinRMSource

    target = target_config(int(port), per_row, 4)
    exporter = Exporter(Config(targets=(target,)))
    poller = exporter.pollers["bench"]
    # The first poll warms the server's caches and the connections, and its pages are kept (on
    # disk, not to weigh on this process's memory) to be read again from memory below.
    spill = tempfile.TemporaryFile()  # noqa: SIM115 - closed once read back, below
    offsets: list[int] = []
    split = pages.split_page

    def recording(data: bytes | str, **kwargs: Any) -> pages.RawPage:
        raw = data if isinstance(data, bytes) else data.encode()
        spill.write(raw)
        offsets.append(len(raw))
        return split(data, **kwargs)

    winrm_source.split_page = recording  # type: ignore[attr-defined]
    poller.poll_once()
    winrm_source.split_page = split  # type: ignore[attr-defined]
    gc.collect()
    reset = reset_peak_rss()
    durations = []
    for _ in range(int(polls)):
        poller.poll_once()
        status = poller.status()
        if not status.up:
            raise SystemExit(f"poll failed: {status.last_error}")
        durations.append(status.last_duration or 0.0)
    data = poller.status().data
    assert data is not None
    httpd = serve(exporter, ("127.0.0.1", 0))
    say({"port": httpd.server_address[1], "polls": durations, "rows": data.rows, "series": data.series})
    sys.stdin.readline()  # the parent scraped
    rss = peak_rss_mb()
    httpd.shutdown()

    hidden: dict[str, float] = {}
    if latency == "yes":
        say({"ready_for_delay": True})
        sys.stdin.readline()  # the server now delays every answer
        for parallel in (1, 4):
            source = WinRMSource(target_config(int(port), per_row, parallel))
            started = time.monotonic()
            aggregate = PackageStatusAggregate(per_row)  # type: ignore[arg-type]
            aggregate.add(Reader(SPECS["package_status"]).rows(source, started + 600))
            aggregate.render("bench", SITE)
            hidden[str(parallel)] = time.monotonic() - started
            source.close()
        say({"hidden": hidden})
        sys.stdin.readline()  # delay back to 0

    # The recorded pages read again from memory: parse (pages -> rows), aggregate, render.
    spill.seek(0)
    recorded = [spill.read(size) for size in offsets]
    spill.close()
    parse, aggregate_times, renders = [], [], []
    for _ in range(int(polls)):
        gc.collect()
        reader = PageReader(SITE)
        aggregate = PackageStatusAggregate(per_row)  # type: ignore[arg-type]
        parsing = adding = 0.0
        for page in recorded:
            started = time.perf_counter()
            rows = page_rows(pages.ReplyPage(split(page), None, CLASS_NAME), parse_item, SITE, reader)
            middle = time.perf_counter()
            aggregate.add(rows)
            parsing += middle - started
            adding += time.perf_counter() - middle
        started = time.perf_counter()
        aggregate.render("bench", SITE)
        renders.append(time.perf_counter() - started)
        parse.append(parsing)
        aggregate_times.append(adding)
    say({"rss": rss, "rss_reset": reset, "parse": parse, "aggregate": aggregate_times, "render": renders,
         "pages": len(recorded), "page_bytes": sum(map(len, recorded)), "hidden": hidden})


def naive_role(port: str, per_row: str) -> None:
    """The obvious alternative: module-level Gauges, .labels().set() per series, generate_latest per scrape."""
    from prometheus_client import REGISTRY, Gauge, start_http_server

    from exporter.collectors import SPECS
    from exporter.collectors.spec import Reader
    from exporter.winrm.source import WinRMSource

    labels = ["target", "site", "package_id", "server", "type", "status", "personality"]
    status_g = Gauge("sccm_package_status", "One series per SMS_PackageStatus row, value 1", labels)
    stamp_g = Gauge("sccm_package_status_update_timestamp_seconds", "UpdateTime of the row", labels)
    rows_g = Gauge("sccm_package_status_rows", "Rows by status", ["target", "site", "type", "status"])
    server_g = Gauge("sccm_server_package_status_rows", "COPY rows per DP", ["target", "site", "server", "status"])
    held_g = Gauge("sccm_package_status_servers", "DPs per package", ["target", "site", "package_id", "status"])
    types = {1: "master", 2: "copy"}
    statuses = {0: "none", 1: "sent", 2: "received", 3: "installed", 4: "retry", 5: "failed", 6: "removed",
                7: "pending_remove"}
    personalities = {0: "none", 1: "mac", 2: "fpnw"}

    source = WinRMSource(target_config(int(port), per_row, 4))
    rows = list(Reader(SPECS["package_status"]).rows(source, time.monotonic() + 600))  # the whole table at once
    started = time.perf_counter()
    for family in (status_g, stamp_g, rows_g, server_g, held_g):
        family.clear()
    unique = {row.key: row for row in rows}.values()
    for row in unique:
        names = ("bench", row.site, row.package_id, row.server, types.get(row.type, str(row.type)),
                 statuses.get(row.status, str(row.status)), personalities.get(row.personality, str(row.personality)))
        if per_row == "all" or (per_row == "not_installed" and row.status != 3):
            status_g.labels(*names).set(1)
            if row.update_time is not None:
                stamp_g.labels(*names).set(row.update_time)
    counts = Counter((row.site, types.get(row.type, str(row.type)), statuses.get(row.status, str(row.status)))
                     for row in unique)
    sites = {row.site for row in unique}
    for site in sites:
        for type_name in types.values():
            for status in statuses.values():
                rows_g.labels("bench", site, type_name, status).set(counts.get((site, type_name, status), 0))
    for (site, type_name, status), count in counts.items():
        rows_g.labels("bench", site, type_name, status).set(count)
    copies = [row for row in unique if row.type == 2]
    per_server = Counter((row.site, row.server, statuses.get(row.status, str(row.status))) for row in copies)
    for site, server in {(s, v) for s, v, _ in per_server}:
        for status in statuses.values():
            server_g.labels("bench", site, server, status).set(per_server.get((site, server, status), 0))
    for (site, server, status), count in per_server.items():
        server_g.labels("bench", site, server, status).set(count)
    holders = Counter(k[:3] for k in {(r.site, r.package_id, statuses.get(r.status, str(r.status)), r.server)
                                       for r in copies})
    for site, package in {(row.site, row.package_id) for row in unique}:
        for status in statuses.values():
            held_g.labels("bench", site, package, status).set(holders.get((site, package, status), 0))
    for (site, package, status), count in holders.items():
        held_g.labels("bench", site, package, status).set(count)
    fill = time.perf_counter() - started
    del rows, unique, copies
    gc.collect()
    httpd, _ = start_http_server(0, addr="127.0.0.1", registry=REGISTRY)
    say({"port": httpd.server_address[1], "fill": fill})
    sys.stdin.readline()
    say({"rss": peak_rss_mb()})


# --- the parent: scrapes and the table --------------------------------------------------------


def scrape(port: int, count: int, gzip: bool, budget: float = 60.0, warm: bool = True) -> tuple[list[float], int]:
    """`count` GETs of /metrics on one keep-alive connection: seconds each (whole body read), bytes.

    With `warm` a first GET, not counted, opens the connection; after `budget` seconds no more
    are made once three are timed.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
    times: list[float] = []
    size = 0
    buffer = bytearray()  # reused, so that the client's allocations do not time the server
    ends = time.monotonic() + budget
    for number in range(0 if warm else 1, count + 1):
        started = time.perf_counter()
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        length = int(response.getheader("Content-Length") or 0)
        if len(buffer) < length:
            buffer = bytearray(length)
        view = memoryview(buffer)[:length]
        while view:
            got = response.readinto(view)
            if not got:
                raise RuntimeError("short body")
            view = view[got:]
        elapsed = time.perf_counter() - started
        assert response.status == 200, response.status
        assert (response.getheader("Content-Encoding") == "gzip") == gzip
        size = length
        if number:  # the first one warms the connection
            times.append(elapsed)
            if len(times) >= (3 if warm else 2) and time.monotonic() > ends:
                break
    connection.close()
    return times, size


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))]


def phase(name: str, since: list[float]) -> None:
    """Progress on stderr: what was just done and how long it took."""
    now = time.monotonic()
    print(f"  {name}: {now - since[0]:.1f} s", file=sys.stderr, flush=True)
    since[0] = now


def measure(size: Size) -> dict[str, Any]:
    result: dict[str, Any] = {"size": size}
    since = [time.monotonic()]
    server = child("serve", str(size.packages), str(size.servers))
    try:
        port = read_message(server)["port"]
        phase("site generated and served", since)
        exporter = child("exporter", str(port), size.per_row, str(size.polls), "yes" if size.latency else "no")
        ready = read_message(exporter)
        phase(f"exporter: warm-up poll and {size.polls} timed polls", since)
        result.update(polls=ready["polls"], rows=ready["rows"], series=ready["series"])
        result["plain"] = scrape(ready["port"], size.scrapes, gzip=False)
        result["gzip"] = scrape(ready["port"], size.scrapes, gzip=True)
        send(exporter, "scraped")
        phase("exporter scraped", since)
        if size.latency:
            read_message(exporter)
            send(server, f"delay {DELAY}")
            read_message(server)
            send(exporter, "delayed")
            result["hidden"] = read_message(exporter)["hidden"]
            send(server, "delay 0")
            read_message(server)
            send(exporter, "undelayed")
            phase(f"polls with {DELAY * 1000:.0f} ms per request", since)
        report = read_message(exporter)
        exporter.wait(60)
        result.update(rss=report["rss"], parse=report["parse"], aggregate=report["aggregate"],
                      render=report["render"], pages=report["pages"], page_bytes=report["page_bytes"])

        phase("pages read again from memory", since)
        naive = child("naive", str(port), size.per_row)
        ready = read_message(naive)
        phase("naive: poll and fill", since)
        result["naive_fill"] = ready["fill"]
        result["naive_plain"] = scrape(ready["port"], size.naive_scrapes, gzip=False, budget=5, warm=False)
        result["naive_gzip"] = scrape(ready["port"], size.naive_scrapes, gzip=True, budget=5, warm=False)
        send(naive, "done")
        result["naive_rss"] = read_message(naive)["rss"]
        naive.wait(60)
        phase("naive scraped", since)
    finally:
        send(server, "quit")
        server.wait(60)
    return result


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory = 0.0
    return (f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB RAM; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if seconds < 0.1 else f"{seconds * 1000:.0f}"


def mb(size: float) -> str:
    return f"{size / 1e6:.1f}"


def table(results: list[dict[str, Any]]) -> Iterator[str]:
    yield ("| rows | per_row | series | poll s | parse rows/s | aggregate s | render s | p+a+r s | peak RSS MB "
           "| scrape p50/p99 ms | bytes MB | gzip p50/p99 ms | gzip MB |")
    yield "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for r in results:
        size: Size = r["size"]
        totals = [sum(run) for run in zip(r["parse"], r["aggregate"], r["render"], strict=True)]
        parse = statistics.median(r["parse"])
        plain, plain_bytes = r["plain"]
        gz, gz_bytes = r["gzip"]
        poll = statistics.median(r["polls"])
        yield (f"| {size.label} ({r['rows']:,}) | {size.per_row} | {r['series']:,} | {poll:.2f} "
               f"| {r['rows'] / parse:,.0f} | {statistics.median(r['aggregate']):.2f} "
               f"| {statistics.median(r['render']):.2f} | {statistics.median(totals):.2f} | {r['rss']:.0f} "
               f"| {ms(percentile(plain, 0.5))} / {ms(percentile(plain, 0.99))} | {mb(plain_bytes)} "
               f"| {ms(percentile(gz, 0.5))} / {ms(percentile(gz, 0.99))} | {mb(gz_bytes)} |")
    yield ""
    yield ("| rows | naive fill s | naive scrape p50/p99 ms | naive gzip p50/p99 ms | scrapes timed "
           "| naive peak RSS MB | scrape ratio (p50) | gzip ratio (p50) |")
    yield "|---|---|---|---|---|---|---|---|"
    for r in results:
        plain, _ = r["plain"]
        gz, _ = r["gzip"]
        naive_plain, _ = r["naive_plain"]
        naive_gz, _ = r["naive_gzip"]
        yield (f"| {r['size'].label} | {r['naive_fill']:.2f} "
               f"| {ms(percentile(naive_plain, 0.5))} / {ms(percentile(naive_plain, 0.99))} "
               f"| {ms(percentile(naive_gz, 0.5))} / {ms(percentile(naive_gz, 0.99))} "
               f"| {len(naive_plain)} + {len(naive_gz)} (exporter: {len(plain)} + {len(gz)}) | {r['naive_rss']:.0f} "
               f"| {percentile(naive_plain, 0.5) / percentile(plain, 0.5):.0f}x "
               f"| {percentile(naive_gz, 0.5) / percentile(gz, 0.5):.0f}x |")
    hidden = [r for r in results if "hidden" in r]
    if hidden:
        yield ""
        yield f"| rows | requests | poll with {DELAY * 1000:.0f} ms per request, 1 enumeration | 4 enumerations |"
        yield "|---|---|---|---|"
        for r in hidden:
            yield (f"| {r['size'].label} | {r['pages']} | {r['hidden']['1']:.1f} s | {r['hidden']['4']:.1f} s |")


def targets(results: list[dict[str, Any]]) -> Iterator[str]:
    """The issue's targets, as far as the sizes measured cover them: the figure, and met or not."""
    checks: list[tuple[str, str, bool]] = []
    for r in results:
        size: Size = r["size"]
        full = statistics.median([sum(run) for run in zip(r["parse"], r["aggregate"], r["render"], strict=True)])
        plain, gz = r["plain"][0], r["gzip"][0]
        if size.label == "1M":
            poll = statistics.median(r["polls"])
            checks += [
                ("1M not_installed: whole poll <= 10 s", f"{poll:.2f} s", poll <= 10),
                ("1M: parse + aggregate + render <= 4 s (>= 250k rows/s)",
                 f"{full:.2f} s ({r['rows'] / full:,.0f} rows/s)", full <= 4),
                ("1M: peak RSS <= 300 MB", f"{r['rss']:.0f} MB", r["rss"] <= 300),
                ("1M: scrape p99 <= 50 ms", f"{ms(percentile(plain, 0.99))} ms", percentile(plain, 0.99) <= 0.05),
            ]
            if "hidden" in r:
                serial = r["pages"] * DELAY
                four = r["hidden"]["4"]
                checks.append((f"1M, {DELAY * 1000:.0f} ms per request: 4 enumerations hide the round trips "
                               f"({r['pages']} x {DELAY * 1000:.0f} ms = {serial:.1f} s)",
                               f"{four:.1f} s (1 enumeration: {r['hidden']['1']:.1f} s)", four < serial))
        if size.label == "200k":
            ratio = min(percentile(r["naive_plain"][0], 0.5) / percentile(plain, 0.5),
                        percentile(r["naive_gzip"][0], 0.5) / percentile(gz, 0.5))
            checks += [
                ("200k all: parse + aggregate + render <= 1.5 s", f"{full:.2f} s", full <= 1.5),
                ("200k: scrape p99 <= 250 ms", f"{ms(percentile(plain, 0.99))} ms", percentile(plain, 0.99) <= 0.25),
                ("200k: gzip scrape p99 <= 50 ms", f"{ms(percentile(gz, 0.99))} ms", percentile(gz, 0.99) <= 0.05),
                ("200k: scrape >= 20x cheaper than the naive baseline (p50)", f"{ratio:.0f}x", ratio >= 20),
            ]
    if checks:
        yield "| target | measured | met |"
        yield "|---|---|---|"
        for name, figure, met in checks:
            yield f"| {name} | {figure} | {'yes' if met else 'NO'} |"


LEGEND = [
    "Written by `python benchmarks/run.py --results benchmarks/RESULTS.md`; its docstring says how each figure",
    "is taken. In short, per size of a synthetic site (benchmarks/synthetic.py) served by the loopback",
    "WS-Management test server in its own process:",
    "",
    "* `poll s`: median whole poll of the exporter (real WinRM source, 4 parallel enumerations, HTTP to the",
    "  test server, parse, aggregate, render), in its own process;",
    "* `parse rows/s`, `aggregate s`, `render s`, `p+a+r s`: the same pages read again from memory: pages to",
    "  rows, counting them in, writing every family (text and gzip) -- medians;",
    "* `peak RSS MB`: the exporter process's high-water mark over the timed polls and the scrapes;",
    "* scrapes: `GET /metrics` over HTTP on loopback, the whole body read, without and with gzip; `bytes MB`:",
    "  the body sent;",
    "* naive: the same rows in module-level prometheus_client `Gauge`s (`.labels().set()` per series, `fill`),",
    "  served by prometheus_client's own HTTP server, `generate_latest` on every scrape; ratio = naive p50 /",
    "  exporter p50.",
]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("serve", "exporter", "naive"):
        roles: dict[str, Callable[..., None]] = {"serve": serve_role, "exporter": exporter_role, "naive": naive_role}
        roles[sys.argv[1]](*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(DEFAULT_SIZES),
                        help=f"comma-separated, of {', '.join(SIZES)} (default: %(default)s)")
    parser.add_argument("--results", type=Path, help="also write the report, with date and machine, to this file")
    args = parser.parse_args()
    started = time.monotonic()
    results = []
    for name in args.sizes.split(","):
        size = SIZES[name.strip().lower()]
        print(f"measuring {size.label} rows ({size.rows:,}, per_row {size.per_row}) ...", file=sys.stderr, flush=True)
        results.append(measure(size))
    lines = list(table(results))
    goals = list(targets(results))
    if goals:
        lines += ["", *goals]
    header = [f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; "
              f"run took {time.monotonic() - started:.0f} s.", ""]
    print("\n".join(header + lines))
    if args.results:
        report = "\n".join(["# Benchmark results", "", *LEGEND, "", *header, *lines, ""])
        args.results.write_text(report + kept_sections(args.results))


def kept_sections(path: Path) -> str:
    """The sections other benchmarks and people added to the report (from its first `## ` heading
    on: this report has none), kept as they are."""
    old = path.read_text() if path.exists() else ""
    start = old.find("\n## ")
    return old[start:] if start >= 0 else ""


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
