"""Command line: `sccm-package-exporter --config.file config.yaml` (also `python -m exporter`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.config import Config, ConfigError, TargetConfig, load_config
from exporter.logs import LEVELS, setup_logging
from exporter.server import DEFAULT_MAX_REQUESTS, ListenAddressError, parse_listen_address, serve
from exporter.service import Exporter
from exporter.webconfig import WebConfig, WebConfigError, load_web_config

if TYPE_CHECKING:
    from exporter.capture import Summary
    from exporter.check import Outcome

log = logging.getLogger("exporter")

EXIT_OK = 0
EXIT_ERROR = 1  # bad configuration, bad flag value, or the listen address could not be bound


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sccm-package-exporter",
        description=(
            "Prometheus exporter for Microsoft Configuration Manager package distribution status. "
            "Polls SMS_PackageStatus from each configured target (SMS Provider over WinRM, an exported "
            "file, or a demo site) in the background and serves it on /metrics and /probe?target=NAME."
        ),
        epilog="Exit codes: 0 clean stop or valid config, 1 invalid config or start-up failure, 2 bad flags.",
    )
    parser.add_argument(
        "--config.file", dest="config_file", default="config.yaml", metavar="PATH",
        help="YAML configuration file (default: %(default)s)",
    )
    parser.add_argument(
        "--web.listen-address", dest="listen_address", default=":9864", metavar="[HOST]:PORT",
        help="address to serve HTTP on; ':9864' is every interface (default: %(default)s)",
    )
    parser.add_argument(
        "--web.config.file", dest="web_config_file", default=None, metavar="PATH",
        help="exporter-toolkit web configuration file: TLS (tls_server_config), basic auth "
        "(basic_auth_users, bcrypt hashes) and response headers (default: plain HTTP, no auth)",
    )
    parser.add_argument(
        "--web.max-requests", dest="max_requests", type=int, default=DEFAULT_MAX_REQUESTS, metavar="N",
        help="scrapes (/metrics, /probe) served at once; more get HTTP 503 at once; 0 for no limit "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--log.level", dest="log_level", default=None, choices=list(LEVELS),
        help="only log lines of this level or higher (default: info; warn with --check-target)",
    )
    parser.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"],
        help="format of log lines on stderr (default: %(default)s)",
    )
    parser.add_argument(
        "--check-config", dest="check_config", action="store_true",
        help="validate the configuration file, print the result and exit (0 valid, 1 invalid)",
    )
    parser.add_argument(
        "--check-target", dest="check_target", default=None, metavar="NAME",
        help="poll the target NAME once in the foreground, print each step with its time and what to "
        "do where one breaks (one JSON object per step with --log.format json), and exit: 0 when every "
        "enabled collector read its class, 1 otherwise",
    )
    parser.add_argument(
        "--record", dest="record", default=None, metavar="DIR",
        help="with --check-target: write every exchange with the provider to DIR (numbered files and "
        "index.json; no password, token or key)",
    )
    parser.add_argument(
        "--anonymize", dest="anonymize", action="store_true",
        help="with --record: replace host, domain, account and site names, package IDs and names "
        "consistently, keeping every value the parsers read",
    )
    parser.add_argument("--version", action="version", version=f"sccm-package-exporter {__version__}")
    return parser


def _report(what: str, path: str, errors: list[str]) -> None:
    """Every problem of a file on stderr, one a line, before exiting 1: nothing was started."""
    print(f"invalid {what} {path}:", file=sys.stderr)
    for error in errors:
        print(f"  {error}", file=sys.stderr)


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        _report("configuration file", path, exc.errors)
        return None


def _load_web(path: str | None) -> WebConfig | None:
    if path is None:
        return WebConfig()
    try:
        return load_web_config(path)
    except WebConfigError as exc:
        _report("web configuration file", path, exc.errors)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or ("warn" if args.check_target else "info"), args.log_format)
    if (args.record or args.anonymize) and not args.check_target:
        print("--record and --anonymize go with --check-target NAME", file=sys.stderr)
        return EXIT_ERROR
    if args.anonymize and not args.record:
        print("--anonymize goes with --record DIR", file=sys.stderr)
        return EXIT_ERROR
    config = _load(args.config_file)
    web_config = _load_web(args.web_config_file)
    if config is None or web_config is None:
        return EXIT_ERROR
    if args.max_requests < 0:
        print(f"--web.max-requests must be 0 (no limit) or more (got {args.max_requests})", file=sys.stderr)
        return EXIT_ERROR
    if args.check_config:
        names = ", ".join(t.name for t in config.targets)
        print(f"configuration file {args.config_file} is valid: {len(config.targets)} target(s): {names}")
        return EXIT_OK
    if args.check_target:
        return check(config, args.check_target, json_format=args.log_format == "json", record=args.record,
                     anonymize=args.anonymize)
    try:
        address = parse_listen_address(args.listen_address)
    except ListenAddressError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_ERROR
    return run(config, address, web_config, config_file=args.config_file, max_requests=args.max_requests)


def check(config: Config, name: str, *, json_format: bool, record: str | None, anonymize: bool) -> int:
    """`--check-target NAME`: one poll in the foreground, each step on stdout; 0 when it all worked."""
    from exporter.check import JsonReport, TextReport, check_target

    target = config.target(name)
    if target is None:
        names = ", ".join(t.name for t in config.targets)
        print(f"--check-target: no target named {name!r} in the configuration (targets: {names})",
              file=sys.stderr)
        return EXIT_ERROR
    report = JsonReport(sys.stdout) if json_format else TextReport(sys.stdout)
    if record is None:
        return EXIT_OK if check_target(target, report).ok else EXIT_ERROR
    if target.source != "winrm":
        print(f"--record: target {name} is not a winrm target: there is no exchange to record", file=sys.stderr)
        return EXIT_ERROR
    from exporter.capture import CaptureError, Recorder

    try:
        recorder = Recorder(record, anonymize=anonymize, secrets=[p for p in (target.auth.password,) if p],
                            hosts=[target.host or ""], accounts=[a for a in (target.auth.username,) if a])
    except CaptureError as exc:
        print(f"--record: {exc}", file=sys.stderr)
        return EXIT_ERROR
    outcome = check_target(target, report, recorder=recorder)
    recorder.close(capture_summary(target, outcome))
    print(f"the exchanges of this poll are in {record}{' (anonymized)' if anonymize else ''}: read them "
          "before you send them (docs/troubleshooting.md)", file=sys.stderr)
    return EXIT_OK if outcome.ok else EXIT_ERROR


def capture_summary(target: TargetConfig, outcome: Outcome) -> Summary:
    """What the capture's index says the poll gave: per collector the rows read, or the reason it
    failed; what a replay of it must give again."""
    from exporter.capture import Settings, Summary

    return Summary(Settings.of(target), outcome.collectors)


class Reloader:
    """Loads the configuration file again on SIGHUP (where there is one) or POST /-/reload; one
    reload at a time.

    An invalid file is refused: its errors are logged and the running configuration stays.
    """

    def __init__(self, exporter: Exporter, path: str) -> None:
        self.exporter = exporter
        self.path = path
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            try:
                config = load_config(self.path)
            except ConfigError as exc:
                log.error("configuration reload failed; the running configuration stays",
                          extra={"file": self.path, "err": "; ".join(exc.errors)})
                self.exporter.reload_failed()
                return False
            self.exporter.reload(config)
            return True


def run(config: Config, address: tuple[str, int], web_config: WebConfig, *, config_file: str = "config.yaml",
        max_requests: int = DEFAULT_MAX_REQUESTS) -> int:
    """Serve until SIGTERM or SIGINT (or SIGBREAK on Windows), then stop cleanly; reload the
    configuration on SIGHUP where the platform has it, and on POST /-/reload everywhere."""
    exporter = Exporter(config)
    reloader = Reloader(exporter, config_file)
    try:
        httpd = serve(exporter, address, web_config, reload=reloader, max_requests=max_requests)
    except OSError as exc:
        log.error("cannot listen", extra={"address": f"{address[0]}:{address[1]}", "err": str(exc)})
        return EXIT_ERROR
    exporter.start()
    host, port = httpd.server_address[:2]
    shown = f"[{host!s}]:{port}" if ":" in str(host) else f"{host!s}:{port}"
    log.info("listening", extra={"address": shown, "targets": len(config.targets),
                                 "tls": web_config.tls_enabled, "basic_auth": web_config.auth_required,
                                 "version": __version__})
    stopping = threading.Event()
    reloading = threading.Event()
    _handle_signals(stopping, reloading)
    while not stopping.wait(0.2):
        if reloading.is_set():
            reloading.clear()
            log.info("reloading the configuration", extra={"signal": "SIGHUP", "file": config_file})
            reloader()
    httpd.shutdown()
    httpd.server_close()
    exporter.stop()
    log.info("stopped")
    return EXIT_OK


def _handle_signals(stopping: threading.Event, reloading: threading.Event) -> None:
    """Set `stopping` on SIGTERM and SIGINT, and `reloading` on SIGHUP.

    Windows has neither SIGHUP nor a way to send SIGTERM to another process: there Ctrl+C (what
    a service wrapper such as NSSM sends first) arrives as SIGINT, Ctrl+Break as SIGBREAK, and
    POST /-/reload is the only way to reload; the log says so once.
    """

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stopping.set()

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        reloading.set()  # the reload itself runs in the main loop, not in the signal handler

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        number = getattr(signal, name, None)  # SIGBREAK: Windows only
        if number is not None:
            signal.signal(number, on_signal)
    hangup = getattr(signal, "SIGHUP", None)  # POSIX only
    if hangup is None:
        log.info("this platform has no SIGHUP: reload the configuration with POST /-/reload")
    else:
        signal.signal(hangup, on_hangup)
