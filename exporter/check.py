"""One poll of one target in the foreground, step by step: `--check-target NAME` and
`/probe?target=NAME&debug=true`.

For a WinRM target the steps are those an administrator takes by hand with `Resolve-DnsName`,
`Test-NetConnection`, `Test-WSMan` and `Get-CimInstance`: the address resolved, the TCP
connection, the TLS handshake and the provider's certificate, authentication, a WS-Management
Identify, the site code, then each enabled collector's class (its WQL, pages, rows, time and the
first row). Each step is reported as it ends, with its time; a step that breaks says what to do
(`exporter.hints`). A file or demo target has only its collectors. The verdict is one line.

The check uses sessions of its own: the scheduled polls of a running exporter and their data are
not touched. No secret is ever printed: messages are the poll's own (scrubbed), principals and
certificate names are not secrets.
"""

from __future__ import annotations

import io
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from exporter import __version__
from exporter.capture import CollectorOutcome
from exporter.collectors import SPECS
from exporter.collectors.spec import ClassRead, page_rows
from exporter.config import TargetConfig
from exporter.errors import PollError, Reason
from exporter.hints import hint
from exporter.rows import item_text
from exporter.sources import make_source
from exporter.wmi import Item, Source

# The properties of SMS_ProviderLocation shown in the site step.
_LOCATION_FIELDS = ("Machine", "SiteCode", "ProviderForLocalSite", "NamespacePath")
# TLS verification failures (OpenSSL X509_V_ERR_*) by what they mean to an administrator.
_UNKNOWN_ISSUER = {2, 18, 19, 20, 21}
_EXPIRED, _NOT_YET_VALID = 10, 9
_NAME_MISMATCH = {62, 64}  # host name, IP address


@dataclass
class Step:
    """One step of the check: its name, outcome, time, one line, details and what to do."""

    name: str
    ok: bool
    seconds: float
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    hint: str | None = None
    fatal: bool = True  # a failed fatal step ends the check (nothing after it can work)


class Report(Protocol):
    def start(self, target: TargetConfig) -> None: ...

    def step(self, step: Step, at: float) -> None: ...

    def verdict(self, ok: bool, text: str, seconds: float) -> None: ...


class TextReport:
    """For a person: one line per step, details indented below it."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def start(self, target: TargetConfig) -> None:
        self._line(f"check-target {target.name}: {_describe(target)}, timeout {target.timeout:g}s "
                   f"(sccm-package-exporter {__version__})")

    def step(self, step: Step, at: float) -> None:
        state = "ok  " if step.ok else "FAIL"
        self._line(f"{at:8.3f}s  {state}  {step.name:<12} {step.summary}  ({step.seconds * 1000:.0f} ms)")
        for key, value in step.details.items():
            for number, line in enumerate(_lines(value)):
                self._line(f"{'':26}{key if number == 0 else '':<14} {line}")
        if step.hint:
            self._line(f"{'':26}{'what to do':<14} {step.hint}")

    def verdict(self, ok: bool, text: str, seconds: float) -> None:
        self._line(f"verdict: {'OK' if ok else 'FAILED'}: {text} ({seconds:.3f} s)")

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


class JsonReport:
    """For a program (`--log.format json`): one JSON object per step, then the verdict's."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def start(self, target: TargetConfig) -> None:
        self._write({"check": target.name, "source": target.source, "endpoint": _describe(target),
                     "timeout_seconds": target.timeout, "version": __version__})

    def step(self, step: Step, at: float) -> None:
        self._write({"step": step.name, "ok": step.ok, "seconds": round(step.seconds, 6), "at": round(at, 6),
                     "summary": step.summary, **step.details, "hint": step.hint})

    def verdict(self, ok: bool, text: str, seconds: float) -> None:
        self._write({"verdict": "ok" if ok else "failed", "summary": text, "seconds": round(seconds, 6)})

    def _write(self, value: dict[str, Any]) -> None:
        self.out.write(json.dumps(value, default=str) + "\n")
        self.out.flush()


def _describe(target: TargetConfig) -> str:
    if target.source == "winrm":
        return f"winrm {target.endpoint}, transport {target.auth.transport}"
    if target.source == "file":
        return f"file {target.path}"
    return "demo site"


def _lines(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value] or ["(none)"]
    return str(value).splitlines() or [""]


@dataclass
class Outcome:
    """What the check found: `ok` when every enabled collector read its classes; per collector
    the rows of its classes, or the reason the first one that failed gave (what a capture's
    summary holds)."""

    ok: bool = False
    failed_at: str | None = None  # the step before the collectors that broke
    collectors: dict[str, CollectorOutcome] = field(default_factory=dict)

    def add(self, collector: str, rows: int, error: PollError | None) -> None:
        """One class of `collector` read (`rows`), or failed (`error`)."""
        before = self.collectors.get(collector, CollectorOutcome(rows=0, ok=True))
        self.collectors[collector] = CollectorOutcome(
            rows=before.rows + (rows if error is None else 0),
            ok=before.ok and error is None,
            reason=before.reason or (error.reason if error is not None else None),
        )


def check_target(target: TargetConfig, report: Report, *, recorder: Any = None) -> Outcome:
    """Run the check, reporting each step as it ends."""
    check = _Check(target, report, recorder)
    check.outcome.ok = check.run()
    return check.outcome


class _Check:
    def __init__(self, target: TargetConfig, report: Report, recorder: Any) -> None:
        self.target = target
        self.report = report
        self.recorder = recorder
        self.started = time.monotonic()
        self.deadline = self.started + target.timeout
        self.outcome = Outcome()

    def run(self) -> bool:
        self.report.start(self.target)
        failed_at: Step | None = None
        if self.target.source == "winrm":
            failed_at = self._winrm_steps()
        if failed_at is not None:
            self.outcome.failed_at = failed_at.name
            return self._verdict(False, f"{self.target.name} failed at {failed_at.name}: {failed_at.summary}")
        return self._collectors()

    # --- the steps before the collectors --------------------------------------------------------

    def _winrm_steps(self) -> Step | None:
        """Resolve, connect, TLS, authenticate and Identify; the first fatal failure, or None."""
        addresses: list[str] = []
        for run in (lambda: self._resolve(addresses), lambda: self._connect(addresses), self._tls):
            step = run()
            if step is None:
                continue
            self._emit(step)
            if not step.ok:
                return step
        for step in self._authenticate():
            self._emit(step)
            if not step.ok and step.fatal:
                return step
        return None

    def _resolve(self, addresses: list[str]) -> Step:
        host, port = self.target.host or "", self.target.port or 0
        started = time.monotonic()
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            message = f"{host} does not resolve: {exc.strerror or exc}"
            return self._failed("resolve", started, message, PollError("connection", message))
        addresses.extend(dict.fromkeys(str(info[4][0]) for info in infos))
        return Step("resolve", True, time.monotonic() - started, f"{host} -> {', '.join(addresses)}")

    def _connect(self, addresses: list[str]) -> Step:
        port = self.target.port or 0
        started = time.monotonic()
        errors = []
        for address in addresses:
            try:
                with socket.create_connection((address, port), timeout=max(0.1, self._left())):
                    return Step("connect", True, time.monotonic() - started, f"TCP {_hostport(address, port)}")
            except OSError as exc:
                errors.append(f"{_hostport(address, port)}: {exc.strerror or type(exc).__name__}")
        message = "cannot connect: " + "; ".join(errors)
        reason: Reason = "timeout" if any("timed out" in e for e in errors) else "connection"
        return self._failed("connect", started, message, PollError(reason, message))

    def _tls(self) -> Step | None:
        if self.target.scheme != "https":
            return None
        started = time.monotonic()
        tls, host, port = self.target.tls, self.target.host or "", self.target.port or 0
        context = _client_context(self.target, verify=tls.verify)
        try:
            version, der = _handshake(context, host, port, self._left())
        except ssl.SSLCertVerificationError as exc:
            return self._untrusted(started, exc)
        except (OSError, ssl.SSLError) as exc:
            message = f"TLS handshake with {host}:{port} failed: {exc}"
            return self._failed("tls", started, message, PollError("connection", message))
        details = {"version": version, **_certificate(der)}
        verified = "certificate verified" if tls.verify else "certificate NOT verified (tls.verify: false)"
        details["verification"] = verified + (f" against {tls.ca_file}" if tls.ca_file and tls.verify else "")
        return Step("tls", True, time.monotonic() - started, f"{version}, {verified}", details)

    def _untrusted(self, started: float, exc: ssl.SSLCertVerificationError) -> Step:
        """Why the certificate failed, with the certificate itself (fetched without verification)."""
        host, port = self.target.host or "", self.target.port or 0
        try:
            version, der = _handshake(_client_context(self.target, verify=False), host, port, self._left())
            details: dict[str, Any] = {"version": version, **_certificate(der)}
        except (OSError, ssl.SSLError):
            details = {}
        code = exc.verify_code
        if code in _UNKNOWN_ISSUER:
            why = "unknown issuer: the CA that issued it is not trusted"
            advice = "set tls.ca_file to the CA that issued the provider's certificate (PEM)"
        elif code in _NAME_MISMATCH:
            why = f"name mismatch: the certificate does not name {host}"
            advice = "set host to a name the certificate holds (subject or alternative names)"
        elif code == _EXPIRED:
            why = "expired"
            advice = "renew the WinRM listener's certificate on the provider"
        elif code == _NOT_YET_VALID:
            why = "not yet valid"
            advice = "check the clocks of this host and the provider"
        else:
            why, advice = exc.verify_message or str(exc), "see the certificate above"
        details["verification"] = f"failed: {why} ({exc.verify_message})"
        return Step("tls", False, time.monotonic() - started, f"certificate not trusted: {why}", details, advice)

    def _authenticate(self) -> Iterator[Step]:
        """Authenticate and ask WS-Management Identify, through the same pywinrm path as a poll."""
        from exporter.winrm.envelopes import build_identify, read_identify
        from exporter.winrm.transport import Transport

        target = self.target
        transport = Transport(target, recorder=self.recorder)
        started = time.monotonic()
        details = _auth_details(target, transport)
        try:
            reply, _ = transport.send(("check", 0), lambda timeout: build_identify(), self.deadline, "Identify")
        except PollError as error:
            transport.close()
            details.pop("as", None)
            yield self._failed("authenticate", started, str(error), error, details)
            return
        except Exception as exc:  # a SOAP fault to Identify: authenticated, but no identity
            transport.close()
            yield Step("authenticate", True, time.monotonic() - started, details.pop("as", ""), details)
            yield Step("identify", False, 0.0, f"the provider refused Identify: {type(exc).__name__}",
                       hint="WinRM answered but not as Windows does: is this a WinRM listener?", fatal=False)
            return
        took = time.monotonic() - started
        transport.close()
        yield Step("authenticate", True, took, details.pop("as", ""), details)
        try:
            identity = read_identify(reply)
        except PollError as error:
            yield Step("identify", False, 0.0, str(error), fatal=False)
            return
        vendor = identity.get("ProductVendor", "?")
        yield Step("identify", True, 0.0, f"{vendor}, {identity.get('ProductVersion', '?')}",
                   {k: v for k, v in identity.items() if k not in ("ProductVendor", "ProductVersion")})

    # --- the collectors ---------------------------------------------------------------------------

    def _collectors(self) -> bool:
        source = self._source()
        try:
            if self.target.source == "winrm" and not self._site(source):
                self.outcome.failed_at = "site"
                return self._verdict(False, f"{self.target.name} failed at site: no site code")
            enabled = [name for name in SPECS if name in self.target.collectors]
            failed = []
            for name in enabled:
                for number, read in enumerate(SPECS[name].reads):
                    step = self._read(source, name, number, read)
                    self._emit(step)
                    if not step.ok:
                        failed.append(name)
            read_all = len(enabled) - len(set(failed))
            if failed:
                text = f"{self.target.name}: {read_all} of {len(enabled)} collectors read their classes; " \
                       f"failed: {', '.join(dict.fromkeys(failed))}"
                return self._verdict(False, text)
            return self._verdict(True, f"{self.target.name}: every enabled collector ({len(enabled)}) read its class")
        finally:
            source.close()

    def _source(self) -> Source:
        if self.target.source == "winrm" and self.recorder is not None:
            from exporter.winrm.source import WinRMSource

            return WinRMSource(self.target, recorder=self.recorder)
        return make_source(self.target)

    def _site(self, source: Any) -> bool:
        started = time.monotonic()
        if self.target.site_code:
            self._emit(self._configured_site(source, started))
            return True
        shown: dict[str, Any] = {}
        try:
            locations = source.provider_locations(self.deadline)
            shown["SMS_ProviderLocation"] = _locations(locations)
            site = source.learn_site(locations)
        except PollError as error:
            self._emit(self._failed("site", started, str(error), error, shown))
            return False
        self._emit(Step("site", True, time.monotonic() - started,
                        f"{site} (the local site in root\\SMS SMS_ProviderLocation)", shown))
        return True

    def _configured_site(self, source: Any, started: float) -> Step:
        """The configured site code, checked against the provider's SMS_ProviderLocation: a code it
        does not list fails every class of the site with 'invalid namespace', so say it once here."""
        configured = self.target.site_code or ""
        try:
            locations = source.provider_locations(self.deadline)
        except PollError as error:  # root\SMS itself unreadable: the collectors will say more
            return Step("site", True, time.monotonic() - started,
                        f"{configured} (configured; SMS_ProviderLocation not readable: {error.reason})")
        codes = {(item_text(item, "SiteCode") or "").strip().upper() for item in locations}
        details = {"SMS_ProviderLocation": _locations(locations)}
        if configured.upper() in codes:
            return Step("site", True, time.monotonic() - started, f"{configured} (configured)", details)
        message = f"the configured site_code {configured} is not one this provider serves ({', '.join(sorted(codes))})"
        return Step("site", False, time.monotonic() - started, message, {"reason": "wmi_fault", **details},
                    hint("wmi_fault", "wrong site_code"), fatal=False)

    def _read(self, source: Source, name: str, number: int, read: ClassRead) -> Step:
        started = time.monotonic()
        query = read.query
        key = name + (f" ({number + 1})" if len(SPECS[name].reads) > 1 else "")
        details: dict[str, Any] = {"class": query.class_name, "wql": query.wql}
        if query.slice_by and self.target.source == "winrm" and self.target.parallel_enumerations > 1:
            details["wql"] += f"  (in {self.target.parallel_enumerations} slices by {query.slice_by})"
        pages = rows = 0
        first: Any = None
        try:
            for page in source.read(query, self.deadline):
                pages += 1
                got = page_rows(page, read.parse_item, source.site_code() or "")
                rows += len(got)
                if first is None and got:
                    first = got[0]
        except PollError as error:
            details.update(pages=pages, rows=rows)
            self.outcome.add(name, rows, error)
            return self._failed(f"collector {key}", started, str(error), error, details, fatal=False)
        took = time.monotonic() - started
        details.update(pages=pages, rows=rows, first_row=_row_text(first) if first is not None else "(no rows)")
        self.outcome.add(name, rows, None)
        label = f"collector {key}"
        return Step(label, True, took, f"{query.class_name}: {rows} rows in {pages} pages", details)

    # --- helpers ----------------------------------------------------------------------------------

    def _failed(self, name: str, started: float, message: str, error: PollError,
                details: dict[str, Any] | None = None, *, fatal: bool = True) -> Step:
        return Step(name, False, time.monotonic() - started, message,
                    {"reason": error.reason, **(details or {})}, hint(error.reason, message), fatal)

    def _emit(self, step: Step) -> None:
        self.report.step(step, time.monotonic() - self.started)

    def _verdict(self, ok: bool, text: str) -> bool:
        self.report.verdict(ok, text, time.monotonic() - self.started)
        return ok

    def _left(self) -> float:
        return max(0.1, self.deadline - time.monotonic())


def _locations(items: list[Item]) -> list[str]:
    """SMS_ProviderLocation instances, one line each, for the site step."""
    return [", ".join(f"{name}={item_text(item, name)}" for name in _LOCATION_FIELDS) for item in items]


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _client_context(target: TargetConfig, *, verify: bool) -> ssl.SSLContext:
    from exporter.winrm.transport import system_ca_file

    tls = target.tls
    if verify:
        context = ssl.create_default_context(cafile=tls.ca_file or system_ca_file())
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if target.auth.transport == "certificate" and tls.cert_file and tls.key_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def _handshake(context: ssl.SSLContext, host: str, port: int, timeout: float) -> tuple[str, bytes]:
    with socket.create_connection((host, port), timeout=timeout) as sock, \
            context.wrap_socket(sock, server_hostname=host) as tls:
        return tls.version() or "?", tls.getpeercert(binary_form=True) or b""


def _certificate(der: bytes) -> dict[str, Any]:
    """Subject, alternative names, issuer and validity of a DER certificate, for a person."""
    if not der:
        return {}
    from cryptography import x509

    from exporter.winrm.clientcert import when

    cert = x509.load_der_x509_certificate(der)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        alternative = [str(n.value) for n in names]
    except x509.ExtensionNotFound:
        alternative = []
    expires = cert.not_valid_after_utc
    left = (expires - datetime.now(UTC)).days
    return {
        "subject": cert.subject.rfc4514_string(),
        "alternative": alternative,
        "issuer": cert.issuer.rfc4514_string(),
        "expires": f"{when(expires)} ({f'{left} days left' if left >= 0 else 'expired'})",
    }


def _auth_details(target: TargetConfig, transport: Any) -> dict[str, Any]:
    auth = target.auth
    sealed = target.scheme == "http" and auth.message_encryption != "never" and auth.transport in (
        "ntlm", "kerberos", "credssp")
    protection = "messages sealed by " + auth.transport if sealed else (
        "TLS" if target.scheme == "https" else "none (allow_unencrypted)")
    details: dict[str, Any] = {"transport": auth.transport, "protection": protection}
    if auth.transport == "kerberos":
        login = transport._kerberos
        details["principal"] = login.principal
        details["spn"] = target.spn
        details["tickets"] = login.source
        details["as"] = f"kerberos as {login.principal} for {target.spn}"
    elif auth.transport == "certificate":
        from exporter.winrm.clientcert import read_certificate, when

        try:
            cert = read_certificate(target.tls.cert_file or "")
            details["certificate"] = f"{cert.subject} ({cert.path}), valid until {when(cert.not_after)}"
            details["as"] = f"client certificate {cert.subject}"
        except ValueError as exc:
            details["certificate"] = str(exc)
            details["as"] = f"client certificate {target.tls.cert_file}"
    else:
        details["principal"] = auth.username
        details["as"] = f"{auth.transport} as {auth.username}"
    return details


def _row_text(row: Any) -> str:
    fields = getattr(row, "__dataclass_fields__", None)
    if fields is None:
        return repr(row)[:500]
    return ", ".join(f"{name}={getattr(row, name)!r}" for name in fields)[:500]


class DebugProbes:
    """At most one debug probe per target at a time (`/probe?debug=true`): a second one while the
    first runs is refused (HTTP 429), so a reloading browser cannot pile polls on a provider."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[str] = set()

    def run(self, target: TargetConfig) -> str | None:
        """The check's report as text, or None when one is already running for this target."""
        with self._lock:
            if target.name in self._running:
                return None
            self._running.add(target.name)
        try:
            buffer = io.StringIO()
            check_target(target, TextReport(buffer))
            return buffer.getvalue()
        finally:
            with self._lock:
                self._running.discard(target.name)
