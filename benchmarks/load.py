"""Load test: many concurrent scrapers for a bounded time while polls of a large site run.

    python benchmarks/load.py                       # 50 scrapers, 10 s, 100k rows (issue 5, item 6)
    python benchmarks/load.py --scrapers 20 --seconds 5 --packages 50 --servers 99   # smaller

The loopback WS-Management test server (benchmarks/run.py's `serve` role, in its own process)
serves a synthetic site of packages x (servers + 1) rows; the installed `sccm-package-exporter`
polls it every `--interval` (basic auth over http on loopback), so polls run all through the
load. Once the first poll is in, `--scrapers` threads of this process each scrape /metrics on
their own keep-alive connection, as fast as they can, for `--seconds` (most with
`Accept-Encoding: gzip` as Prometheus sends it, every fifth without). Every response must be a
200 with the whole body; the exporter's resident memory is sampled before, during and after.
Prints one table; exits 1 if any scrape failed or the exporter died.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.run import PASSWORD, SITE, USER, child, read_message, send  # noqa: E402


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    bytes: int = 0

    def good(self, elapsed: float, size: int) -> None:
        with self.lock:
            self.ok += 1
            self.seconds.append(elapsed)
            self.bytes += size

    def bad(self, why: str) -> None:
        with self.lock:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(why)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def exporter_script() -> str:
    script = Path(sys.executable).with_name("sccm-package-exporter")
    return str(script) if script.exists() else "sccm-package-exporter"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def scraper(port: int, number: int, until: float, tally: Tally) -> None:
    headers = {"Accept-Encoding": "identity" if number % 5 == 4 else "gzip"}
    connection: http.client.HTTPConnection | None = None
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("GET", "/metrics", headers=headers)
            response = connection.getresponse()
            body = response.read()
            length = int(response.getheader("Content-Length") or -1)
            if response.status != 200 or len(body) != length:
                tally.bad(f"HTTP {response.status}, {len(body)} of {length} bytes")
                continue
            tally.good(time.perf_counter() - started, len(body))
        except (OSError, http.client.HTTPException) as exc:
            tally.bad(f"{type(exc).__name__}: {exc}")
            if connection is not None:
                connection.close()
            connection = None
    if connection is not None:
        connection.close()


def polls_finished(log: Path) -> int:
    return log.read_text(errors="replace").count('msg="poll finished"')


def run(args: argparse.Namespace) -> int:
    rows = args.packages * (args.servers + 1)
    server = child("serve", str(args.packages), str(args.servers))
    exporter: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="sccm-load-") as tmp:
        try:
            port = read_message(server)["port"]
            secret = Path(tmp) / "password"
            secret.write_text(PASSWORD + "\n")
            config = Path(tmp) / "config.yaml"
            config.write_text(
                # The core table only: the load test's synthetic site serves SMS_PackageStatus alone.
                f"defaults: {{interval: {args.interval}s, timeout: {args.interval}s, stale_after: 10m, "
                "collectors: [package_status]}\n"
                "targets:\n"
                f"  - {{name: load, source: winrm, host: 127.0.0.1, port: {port}, scheme: http, site_code: {SITE},\n"
                f"     auth: {{transport: basic, username: {USER}, password_file: {secret},\n"
                "             allow_unencrypted: true}}\n"
            )
            http_port = free_port()
            log = Path(tmp) / "exporter.log"
            with open(log, "wb") as out:
                exporter = subprocess.Popen(
                    [exporter_script(), "--config.file", str(config), "--web.listen-address",
                     f"127.0.0.1:{http_port}"], stdout=out, stderr=subprocess.STDOUT,
                    env={k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")})
            ready_by = time.monotonic() + 120
            while True:
                if exporter.poll() is not None:
                    raise RuntimeError(f"exporter exited: {log.read_text()[-2000:]}")
                try:
                    if get(http_port, "/-/ready", 2)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > ready_by:
                    raise RuntimeError("exporter not ready in 120 s")
                time.sleep(0.2)
            status, body = get(http_port, "/metrics", 60)
            assert status == 200 and b'sccm_up{target="load"} 1' in body, body[-500:]
            rss_before = rss_mb(exporter.pid)
            polls_before = polls_finished(log)
            tally = Tally()
            samples: list[float] = []
            until = time.monotonic() + args.seconds
            threads = [threading.Thread(target=scraper, args=(http_port, n, until, tally), daemon=True)
                       for n in range(args.scrapers)]
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                samples.append(rss_mb(exporter.pid))
                time.sleep(0.25)
            for thread in threads:
                thread.join()
            polls = polls_finished(log) - polls_before
            rss_after = rss_mb(exporter.pid)
            alive = exporter.poll() is None
        finally:
            if exporter is not None and exporter.poll() is None:
                exporter.terminate()
                exporter.wait(15)
            send(server, "quit")
            server.wait(15)
    # Flat memory: the second half of the run holds no more than the first (no growth per scrape).
    first, second = samples[: len(samples) // 2], samples[len(samples) // 2 :]
    times = sorted(tally.seconds) or [0.0]
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"| rows | scrapers | seconds | scrapes ok | failed | scrapes/s | p50 ms | p99 ms | MB sent | "
          f"polls during | RSS before MB | RSS 1st half max MB | RSS 2nd half max MB | RSS after MB |\n"
          f"|{'---|' * 14}\n"
          f"| {rows:,} | {args.scrapers} | {args.seconds:g} | {tally.ok:,} | {tally.failed} | "
          f"{tally.ok / args.seconds:.1f} | {statistics.median(times) * 1000:.1f} | {p99 * 1000:.1f} | "
          f"{tally.bytes / 1e6:.0f} | {polls} | {rss_before:.0f} | {max(first or [0.0]):.0f} | "
          f"{max(second or [0.0]):.0f} | {rss_after:.0f} |")
    for error in tally.errors:
        print(f"failed scrape: {error}")
    if not alive:
        print("the exporter died during the load")
    return 0 if tally.failed == 0 and alive and tally.ok > 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--packages", type=int, default=500, help="default 500 x (199 + 1) = 100k rows")
    parser.add_argument("--servers", type=int, default=199)
    parser.add_argument("--interval", type=int, default=5, help="poll interval in seconds (default 5)")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
