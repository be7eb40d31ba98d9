"""What the optional collectors (issue 6) cost a poll, on synthetic sites over loopback.

    python benchmarks/collectors.py                    # 10k, 100k and 200k rows, about 3 minutes
    python benchmarks/collectors.py --sizes 100k,1m    # some sizes (smoke, 10k, 100k, 200k, 1m: 1m ~6 min)
    python benchmarks/collectors.py --results benchmarks/RESULTS.md   # also write the report there

For each size a synthetic site with every collector's class (benchmarks/synthetic.py
`full_dataset`: N packages on M distribution points, N x (M + 1) `SMS_PackageStatus` rows, as
many `SMS_PackageStatusDistPointsSummarizer` rows less the MASTER ones, one `SMS_PackageBaseclass`
per package, one `SMS_DistributionPointInfo` per DP) is served by the loopback WS-Management test
server (tests/wsman_server.py; basic auth over http, 512000-byte envelopes) in a process of its
own, benchmarks/run.py's `serve` role with the full data set and TCP_NODELAY on its sockets
(`--nagle` leaves it as run.py has it: see `serve_role`). Then, each in a process of its own
(so that its peak RSS is its own), the real exporter code polls it with one set of collectors:

    package_status                                  the core table alone
    package_status, package_info, dp_info           the default
    package_status, dp_content_state
    all four

with `exporter.poller.TargetPoller` over `exporter.sources.make_source` (the WinRM source, four
parallel enumerations, a target built as run.py's). A first poll warms the server's caches and the
connections and is not counted; then `poll s` is the median of the whole polls
(`TargetStatus.last_duration`), and each collector's column the median of its own duration
(`CollectorStatus.last_duration`: from the poll's start to the end of its render, so it includes
any wait for the CPU the others hold); `CPU s` the exporter process's CPU time (user + system,
every thread) during a poll, median. `peak RSS` is the process's high-water mark over the timed
polls (Linux clear_refs after the warm-up).

`alone` reads each class by itself in another process, through the very function a poll's
collector thread runs (`TargetPoller._collect_into`: read, count in, render) with nothing else
running: its own cost, the yardstick of the issue's criterion. The pages of its warm-up read are
recorded and read again from memory as the source reads them: `parse rows/s` is replies -> rows
only (`split_page`, then `PageReader` for `SMS_PackageStatus`, the fragment reader and the
class's `parse_item` for the others), without the network or the aggregate.

Unless `--no-delay`, the same polls are timed again with a 20 ms round trip injected
into every request of the server (run.py's latency run): every set at 10k and 100k rows,
`package_status` alone and the default set at 200k and 1M; and the classes of those sets read
alone again under that delay, the yardstick of the delayed verdict.

The verdict per size is the issue's criterion, "the extra enumerations must not slow a poll of
the core table by more than their own rows": the default set's extra poll time over
`package_status` alone against package_info's and dp_info's own read time, and the same for
dp_content_state; beside them, how much longer `package_status`'s own duration gets. `met`: the
extra is at most that own time; `met within noise`: at most that plus the spread (max - min) of
the polls of `package_status` alone; else `NOT met`. The machine may be shared: every figure is a
median of several, and the noise is what the spread says.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.run import (  # noqa: E402
    DELAY,
    SITE,
    machine,
    peak_rss_mb,
    read_message,
    reset_peak_rss,
    say,
    send,
    target_config,
)
from exporter.config import Collector  # noqa: E402

COLLECTORS: tuple[Collector, ...] = ("package_status", "package_info", "dp_info", "dp_content_state")
CONFIGS: dict[str, tuple[str, ...]] = {
    "package_status": ("package_status",),
    "default": ("package_status", "package_info", "dp_info"),
    "+ dp_content_state": ("package_status", "dp_content_state"),
    "all four": COLLECTORS,
}


@dataclass(frozen=True)
class Size:
    label: str
    packages: int
    servers: int  # distribution points; SMS_PackageStatus rows = packages * (servers + 1)
    per_row: str
    polls: int  # timed polls per configuration, after one warm-up poll
    delayed: tuple[str, ...]  # the configurations also timed with DELAY per request

    @property
    def rows(self) -> int:
        return self.packages * (self.servers + 1)


SIZES = {
    "smoke": Size("2k", 20, 99, "all", 1, ("package_status", "default")),
    "10k": Size("10k", 100, 99, "all", 5, tuple(CONFIGS)),
    "100k": Size("100k", 500, 199, "all", 3, tuple(CONFIGS)),
    "200k": Size("200k", 1000, 199, "all", 3, ("package_status", "default")),
    "1m": Size("1M", 4000, 249, "not_installed", 3, ("package_status", "default")),
}
DEFAULT_SIZES = ("10k", "100k", "200k")


# --- child processes ------------------------------------------------------------------------


def child(role: str, *args: str) -> subprocess.Popen[str]:
    """This script in another process, in `role` (run.py's `child`, for this file)."""
    return subprocess.Popen(
        [sys.executable, __file__, role, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
    )


def serve_role(packages: str, servers: str, nagle: str = "off") -> None:
    """run.py's `serve` role (same server, envelope and commands), with every collector's class.

    With `nagle` "off" (the default) the server's sockets get TCP_NODELAY: the test server writes
    a reply's headers and body in two writes, and on loopback a reply smaller than a segment then
    waits for the client's delayed ACK (40 ms on Linux) -- which would make a read of a few small
    pages (package_info, dp_info) look 40 times dearer than it is. "on" keeps the server as it is.
    """
    import wsman_server

    import benchmarks.run
    import benchmarks.synthetic

    wsman_server._Handler.disable_nagle_algorithm = nagle == "off"
    benchmarks.synthetic.dataset = benchmarks.synthetic.full_dataset  # what run.serve_role imports
    benchmarks.run.serve_role(packages, servers)


def target(port: int, per_row: str, collectors: tuple[str, ...]) -> Any:
    """run.py's target (four parallel enumerations, timeout 600 s) with these collectors."""
    return dataclasses.replace(target_config(port, per_row, 4), collectors=frozenset(collectors))


def poll_role(port: str, per_row: str, names: str, polls: str) -> None:
    """One configuration: a warm-up poll, then timed polls; durations, rows and peak RSS."""
    from exporter.poller import TargetPoller
    from exporter.sources import make_source

    config = target(int(port), per_row, tuple(names.split(",")))
    poller = TargetPoller(config, make_source(config))
    whole: list[float] = []
    cpu: list[float] = []
    own: dict[str, list[float]] = {}
    rows: dict[str, int] = {}
    reset = False
    for number in range(int(polls) + 1):
        started = time.process_time()
        poller.poll_once()
        used = time.process_time() - started
        status = poller.status()
        failed = [f"{c.name}: {c.last_error}" for c in status.collectors if not c.up]
        if failed:
            raise SystemExit(f"poll failed: {'; '.join(failed)}")
        if number == 0:
            gc.collect()
            reset = reset_peak_rss()
            continue
        whole.append(status.last_duration or 0.0)
        cpu.append(used)
        for collector in status.collectors:
            assert collector.data is not None
            own.setdefault(collector.name, []).append(collector.last_duration or 0.0)
            rows[collector.name] = collector.data.rows
    poller.source.close()
    say({"polls": whole, "cpu": cpu, "own": own, "rows": rows, "rss": peak_rss_mb(), "rss_reset": reset})


def alone_role(port: str, per_row: str, polls: str, names: str) -> None:
    """Each class read by itself (a poll's collector thread, nothing beside it); then its pages parsed from memory.

    The replies of the warm-up read are recorded as pywinrm hands them over, and read again the
    way a poll reads them: `split_page`, then the collector's own reader where it has one
    (`PageReader` for `SMS_PackageStatus`), else the fragment reader (or the general parser) and
    its `parse_item`.
    """
    from winrm.protocol import Protocol

    from exporter.collectors import SPECS
    from exporter.collectors.spec import page_rows as rows_of_page
    from exporter.poller import TargetPoller
    from exporter.sources import make_source
    from exporter.winrm.pages import FragmentReader, RawPage, ReplyPage, split_page

    config = target(int(port), per_row, COLLECTORS)
    poller = TargetPoller(config, make_source(config))
    recorded: dict[str, list[bytes]] = {}

    def read(name: Collector) -> tuple[float, float, int]:
        outcome: list[tuple[Any, float]] = []
        processor = time.process_time()
        started = time.monotonic()
        poller._collect_into(SPECS[name], started + config.timeout, outcome)  # the collector thread's body
        used = time.process_time() - processor
        result, ended = outcome[0]
        if isinstance(result, BaseException):
            raise SystemExit(f"{name} alone failed: {result}")
        return ended - started, used, result.rows

    send_message = Protocol.send_message
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    rows: dict[str, int] = {}
    for name in [next(c for c in COLLECTORS if c == given) for given in names.split(",")]:
        pages: list[bytes] = []

        def record(self: Protocol, message: str, pages: list[bytes] = pages) -> Any:
            reply = send_message(self, message)
            pages.append(reply if isinstance(reply, bytes) else str(reply).encode())
            return reply

        Protocol.send_message = record  # type: ignore[method-assign]
        read(name)  # warm-up, recorded
        Protocol.send_message = send_message  # type: ignore[method-assign]
        recorded[name] = pages
        times[name], cpu[name] = [], []
        for _ in range(int(polls)):
            gc.collect()
            took, used, count = read(name)
            times[name].append(took)
            cpu[name].append(used)
            rows[name] = count
    poller.source.close()

    def reader(name: str) -> Callable[[RawPage, int], list[Any]]:
        """What turns one recorded reply of the collector's class into rows, as a poll does."""
        read = SPECS[name].reads[0]
        wire = read.wire_reader(SITE) if read.wire_reader is not None else None
        fragments = FragmentReader(read.query.properties)
        return lambda raw, first: rows_of_page(
            ReplyPage(raw, fragments, read.query.class_name, first), read.parse_item, SITE, wire)

    parse: dict[str, list[float]] = {}
    parsed: dict[str, int] = {}
    for read_name, pages in recorded.items():
        parse[read_name] = []
        for _ in range(max(3, int(polls))):
            gc.collect()
            page_rows = reader(read_name)
            count = 0
            started = time.perf_counter()
            for page in pages:
                count += len(page_rows(split_page(page), count + 1))
            parse[read_name].append(time.perf_counter() - started)
            parsed[read_name] = count
        if parsed[read_name] != rows[read_name]:
            raise SystemExit(f"{read_name}: {parsed[read_name]} rows parsed from memory, {rows[read_name]} read")
    say({"alone": times, "cpu": cpu, "rows": rows, "parse": parse, "parsed": parsed,
         "pages": {name: len(pages) for name, pages in recorded.items()},
         "page_bytes": {name: sum(map(len, pages)) for name, pages in recorded.items()}})


# --- the parent -------------------------------------------------------------------------------


def phase(name: str, since: list[float]) -> None:
    now = time.monotonic()
    print(f"  {name}: {now - since[0]:.1f} s", file=sys.stderr, flush=True)
    since[0] = now


def run_config(port: int, size: Size, names: tuple[str, ...]) -> dict[str, Any]:
    process = child("poll", str(port), size.per_row, ",".join(names), str(size.polls))
    try:
        result = read_message(process)
    finally:
        process.wait(60)
    return result


def run_alone(port: int, size: Size, names: tuple[str, ...]) -> dict[str, Any]:
    process = child("alone", str(port), size.per_row, str(size.polls), ",".join(names))
    try:
        result = read_message(process)
    finally:
        process.wait(60)
    return result


def measure(size: Size, delay: bool, nagle: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"size": size, "configs": {}, "delayed": {}}
    since = [time.monotonic()]
    server = child("serve", str(size.packages), str(size.servers), "on" if nagle else "off")
    try:
        port = read_message(server)["port"]
        phase("site generated and served", since)
        for label, names in CONFIGS.items():
            result["configs"][label] = run_config(port, size, names)
            phase(f"{label}: warm-up and {size.polls} polls", since)
        result["alone"] = run_alone(port, size, COLLECTORS)
        phase("each class alone, and parsed from memory", since)
        if delay and size.delayed:
            send(server, f"delay {DELAY}")
            read_message(server)
            for label in size.delayed:
                result["delayed"][label] = run_config(port, size, CONFIGS[label])
                phase(f"{label} with {DELAY * 1000:.0f} ms per request", since)
            wanted = {name for label in size.delayed for name in CONFIGS[label]}
            result["alone_delayed"] = run_alone(port, size, tuple(n for n in COLLECTORS if n in wanted))
            phase(f"each class alone with {DELAY * 1000:.0f} ms per request", since)
            send(server, "delay 0")
            read_message(server)
    finally:
        send(server, "quit")
        server.wait(60)
    return result


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """The median and, with several values, the range: `1.23 (1.20-1.31)`."""
    if len(values) < 2:
        return f"{med(values):.3f}"
    return f"{med(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def config_table(results: list[dict[str, Any]], key: str) -> Iterator[str]:
    yield ("| rows | collectors | poll s (min-max) | CPU s | package_status s | package_info s | dp_info s "
           "| dp_content_state s | rows ps / info / dp / content | peak RSS MB |")
    yield "|---|---|---|---|---|---|---|---|---|---|"
    for r in results:
        size: Size = r["size"]
        for label, c in r[key].items():
            own = [f"{med(c['own'][name]):.3f}" if name in c["own"] else "-" for name in COLLECTORS]
            rows = " / ".join(f"{c['rows'][name]:,}" if name in c["rows"] else "-" for name in COLLECTORS)
            yield (f"| {size.label} | {label} | {spread(c['polls'])} | {med(c['cpu']):.3f} | {' | '.join(own)} "
                   f"| {rows} | {c['rss']:.0f} |")


def alone_table(results: list[dict[str, Any]]) -> Iterator[str]:
    delayed = any("alone_delayed" in r for r in results)
    extra = f" read s with {DELAY * 1000:.0f} ms |" if delayed else ""
    yield ("| rows | class read alone | rows | pages | MB | read s (min-max) | CPU s | read rows/s "
           "| parse rows/s (memory) |" + extra)
    yield "|---|---|---|---|---|---|---|---|---|" + ("---|" if delayed else "")
    for r in results:
        a = r["alone"]
        for name in COLLECTORS:
            read = med(a["alone"][name])
            parse = med(a["parse"][name])
            line = (f"| {r['size'].label} | {name} | {a['rows'][name]:,} | {a['pages'][name]} "
                    f"| {a['page_bytes'][name] / 1e6:.1f} | {spread(a['alone'][name])} | {med(a['cpu'][name]):.3f} "
                    f"| {a['rows'][name] / read:,.0f} | {a['parsed'][name] / parse:,.0f} |")
            if delayed:
                slow = r.get("alone_delayed", {}).get("alone", {}).get(name)
                line += f" {spread(slow)} |" if slow else " - |"
            yield line


def verdict(r: dict[str, Any], key: str = "configs") -> Iterator[str]:
    """The issue's criterion: the extra poll time of a set is at most its extra classes' own read time.

    The own read time is the class read alone (`alone_role`), under the same injected delay.
    """
    configs = r[key]
    alone = r["alone_delayed" if key == "delayed" else "alone"]["alone"]
    base = configs.get("package_status")
    if base is None:
        return
    poll0 = med(base["polls"])
    core0 = med(base["own"]["package_status"])
    where = r["size"].label + (f", {DELAY * 1000:.0f} ms per request" if key == "delayed" else "")
    for label, names in (("default", ("package_info", "dp_info")), ("+ dp_content_state", ("dp_content_state",))):
        c = configs.get(label)
        if c is None:
            continue
        poll = med(c["polls"])
        core = med(c["own"]["package_status"])
        own = sum(med(alone[name]) for name in names)
        cpu0, cpu = med(base["cpu"]), med(c["cpu"])
        own_cpu = sum(med(r["alone_delayed" if key == "delayed" else "alone"]["cpu"][name]) for name in names)
        extra = poll - poll0
        noise = max(base["polls"]) - min(base["polls"])
        met = "met" if extra <= own else "met within noise" if extra <= own + noise else "NOT met"
        yield (f"* {where}, {label} (+ {' + '.join(names)}): poll {poll0:.3f} -> {poll:.3f} s ({extra:+.3f} s) "
               f"against their own read alone {own:.3f} s (noise {noise:.3f} s): **{met}**; "
               f"package_status's own duration {core0:.3f} -> {core:.3f} s ({core - core0:+.3f} s); "
               f"CPU {cpu0:.3f} -> {cpu:.3f} s ({cpu - cpu0:+.3f} s, theirs alone {own_cpu:.3f} s)")


def report(results: list[dict[str, Any]], delay: bool) -> list[str]:
    lines = ["Polls without injected latency (medians of the timed polls; poll s also min-max):", ""]
    lines += config_table(results, "configs")
    lines += ["", "Each class read alone (a collector thread's read, count in and render, nothing beside it), "
              "and its pages parsed again from memory:", ""]
    lines += alone_table(results)
    if delay and any(r["delayed"] for r in results):
        lines += ["", f"The same polls with {DELAY * 1000:.0f} ms injected into every request:", ""]
        lines += config_table([r for r in results if r["delayed"]], "delayed")
    lines += ["", "Verdict (the issue: the extra enumerations must not slow a poll of the core table by more "
              "than their own rows; `met within noise`: over by at most the spread of package_status's polls):", ""]
    for r in results:
        lines += verdict(r)
        if r["delayed"]:
            lines += verdict(r, "delayed")
    return lines


def main() -> None:
    roles: dict[str, Callable[..., None]] = {"serve": serve_role, "poll": poll_role, "alone": alone_role}
    if len(sys.argv) > 1 and sys.argv[1] in roles:
        roles[sys.argv[1]](*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(DEFAULT_SIZES),
                        help=f"comma-separated, of {', '.join(SIZES)} (default: %(default)s)")
    parser.add_argument("--no-delay", dest="delay", action="store_false",
                        help=f"skip the polls with {DELAY * 1000:.0f} ms injected per request")
    parser.add_argument("--nagle", action="store_true",
                        help="leave Nagle's algorithm on in the test server, as run.py does (small replies then wait "
                             "40 ms for a delayed ACK)")
    parser.add_argument("--results", type=Path,
                        help="also write the report, with date and machine, into this file: between its markers "
                             f"({BEGIN} ... {END}) when it has them, else at its end")
    args = parser.parse_args()
    started = time.monotonic()
    results = []
    for name in args.sizes.split(","):
        size = SIZES[name.strip().lower()]
        print(f"measuring {size.label} ({size.rows:,} SMS_PackageStatus rows, per_row {size.per_row}) ...",
              file=sys.stderr, flush=True)
        results.append(measure(size, args.delay, args.nagle))
    header = [f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; "
              f"`python benchmarks/collectors.py --sizes {args.sizes}{' --nagle' if args.nagle else ''}"
              f"{'' if args.delay else ' --no-delay'}` took {time.monotonic() - started:.0f} s; test server "
              f"{'with Nagle (as run.py)' if args.nagle else 'with TCP_NODELAY'}.", ""]
    lines = header + report(results, args.delay)
    print("\n".join(lines))
    if args.results:
        write_results(args.results, lines)


BEGIN, END = "<!-- benchmarks/collectors.py: begin -->", "<!-- benchmarks/collectors.py: end -->"


def write_results(path: Path, lines: list[str]) -> None:
    """Put the report between the BEGIN and END markers of `path`, or at its end (a new file: just the report).

    So that benchmarks/RESULTS.md keeps run.py's figures and the reading written around these.
    """
    block = "\n".join([BEGIN, "", *lines, "", END])
    text = path.read_text() if path.exists() else ""
    start, end = text.find(BEGIN), text.find(END)
    if start >= 0 and end > start:
        text = text[:start] + block + text[end + len(END):]
    else:
        before = text.rstrip("\n") + "\n\n" if text.strip() else ""
        text = f"{before}## Optional collectors (issue 6)\n\n{block}\n"
    path.write_text(text)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
