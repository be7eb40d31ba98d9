"""What an SMS Provider answered, written down exactly and safely: `--record DIR` and `--anonymize`.

Nobody on the project has a Windows host: every real difference between a provider and the test
server reaches us as a capture a user made. A `Recorder` is handed to `WinRMSource` (and on to
`Transport`), which reports every WS-Management exchange it sends, and the recorder writes:

* `NNNN-<action>-<class>.request.xml` and `.reply.xml`: the plain SOAP text of each exchange
  (with message encryption, the decrypted text; a SOAP fault's reply body too), numbered in the
  order the exchanges started;
* `index.json` (`Recorder.close`): every exchange (lane, action, class, WQL, HTTP status,
  headers, timing, error) and the poll's summary (settings, rows and outcome per collector), so
  that `tests/test_captures.py` can replay the capture and expect the same outcome.

Nothing secret is written: no Authorization or Cookie header, no authentication token (a
`WWW-Authenticate` keeps its scheme name only), and every configured secret string is scrubbed
from every byte written. With `anonymize`, an `Anonymizer` replaces the names of the estate
(hosts, domains, accounts, site codes, package IDs, package and group names) by stand-ins, the
same original by the same stand-in throughout the capture, keeping what the parsers read.

`load_capture` reads a capture back (the replay server of the tests uses it).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, unescape

from winrm.exceptions import WinRMOperationTimeoutError, WinRMTransportError, WSManFaultError

from exporter import __version__
from exporter.collectors import SPECS
from exporter.config import TargetConfig
from exporter.winrm.envelopes import ACTION_ENUMERATE, ACTION_PULL, ACTION_RELEASE
from exporter.winrm.errors import short

FORMAT = 1
INDEX = "index.json"
SCRUBBED = "********"

_ACTIONS = {ACTION_ENUMERATE: "Enumerate", ACTION_PULL: "Pull", ACTION_RELEASE: "Release"}
# Headers never written: they carry credentials or session tokens.
_DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "cookie2", "set-cookie",
                              "set-cookie2"})
# Challenges keep their scheme names (which schemes the provider offers is worth knowing), never a token.
_CHALLENGE_HEADERS = frozenset({"www-authenticate", "proxy-authenticate"})


class CaptureError(ValueError):
    """A capture directory that cannot be recorded into or read back; the message says why."""


# --- the summary ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What a replay needs to poll as the recorded poll did; never a secret or a host."""

    scheme: str
    transport: str
    message_encryption: str
    parallel_enumerations: int
    site_code: str | None  # the configured site code; None when it was discovered
    property_list: bool  # False: the classes were read with SELECT * (class URIs)
    collectors: tuple[str, ...]

    @classmethod
    def of(cls, target: TargetConfig, *, property_list: bool = True) -> Settings:
        return cls(
            scheme=target.scheme,
            transport=target.auth.transport,
            message_encryption=target.auth.message_encryption,
            parallel_enumerations=target.parallel_enumerations,
            site_code=target.site_code,
            property_list=property_list,
            collectors=tuple(name for name in SPECS if name in target.collectors),
        )


@dataclass(frozen=True)
class CollectorOutcome:
    """One collector's read in the recorded poll: the rows its `Reader` gave (before any
    aggregation; those given before the failure when it failed), and the `PollError` if any."""

    rows: int
    ok: bool
    reason: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Summary:
    """The poll a capture holds, as `Recorder.close` writes it into the index."""

    settings: Settings
    collectors: dict[str, CollectorOutcome]
    exporter_version: str = __version__


# --- the index --------------------------------------------------------------------------------


@dataclass
class ExchangeRecord:
    """One exchange as `index.json` lists it (`class` is `class_name` here)."""

    seq: int
    lane: str  # the connection: the class it reads and the slice number, `SMS_PackageStatus/0`
    attempt: int  # 2 for the resend after a dropped connection
    action: str  # Enumerate, Pull, Release, Identify or other
    class_name: str | None
    resource_uri: str | None
    wql: str | None
    context: str | None  # the enumeration context the request carried (Pull, Release)
    request: str  # file name
    reply: str | None = None  # file name; None when no body came back
    status: int | None = None  # the final HTTP status; None when no HTTP answer came
    action_uri: str | None = None  # the request's a:Action
    encrypted: bool = False  # the bodies went sealed (message encryption) on the wire
    error: str | None = None
    start: float = 0.0  # seconds since the recording started
    duration: float | None = None
    request_headers: dict[str, str] = field(default_factory=dict)
    reply_headers: dict[str, str] = field(default_factory=dict)
    # The HTTP answers before the final one (authentication rounds): status and headers.
    http: list[dict[str, Any]] = field(default_factory=list)

    @property
    def replayable(self) -> bool:
        """An HTTP answer a server can give again: a body, or a status that needs none."""
        return self.status is not None and (self.reply is not None or self.status != 200)

    def to_json(self) -> dict[str, Any]:
        return {("class" if key == "class_name" else key): value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Capture:
    """A capture read back: its exchanges in order, its summary (None if the poll never closed it)."""

    directory: Path
    exchanges: tuple[ExchangeRecord, ...]
    summary: Summary | None
    anonymized: bool

    def body(self, name: str) -> bytes:
        return (self.directory / name).read_bytes()


# --- recording --------------------------------------------------------------------------------


class Recorder:
    """Writes the exchanges of one poll into `directory` (created; must hold no capture yet).

    Thread-safe: the parallel enumerations of a poll record at once. `secrets`: strings scrubbed
    from every byte written (the password, whatever else the configuration holds secret), as
    defence in depth behind the headers that are never written. `hosts` and `accounts` (the
    target's host and user name) are anonymized even where only free text names them.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        anonymize: bool = False,
        secrets: Iterable[str] = (),
        hosts: Iterable[str] = (),
        accounts: Iterable[str] = (),
    ) -> None:
        self.directory = Path(directory)
        _prepare(self.directory)
        self._lock = threading.Lock()
        self._clock = time.monotonic()
        self._started = datetime.now(UTC)
        self._seq = 0
        self._open: dict[int, Exchange] = {}
        self._records: list[ExchangeRecord] = []
        self._scrub = Scrubber(secrets)
        self._anonymizer = Anonymizer(hosts=hosts, accounts=accounts) if anonymize else None
        self._learned_at: dict[int, int] = {}  # seq -> names the anonymizer knew when its files were written
        self._closed = False

    def begin(self, class_name: str, lane: int, request: str, *, attempt: int = 1) -> Exchange:
        """An exchange about to be sent on connection (`class_name`, `lane`): report it with
        `Exchange.watch`, then `replied` or `failed`."""
        with self._lock:
            self._seq += 1
            exchange = Exchange(self, self._seq, class_name, lane, request, attempt, time.monotonic() - self._clock)
            self._open[exchange.seq] = exchange
            return exchange

    def close(self, summary: Summary | None = None) -> None:
        """Write `index.json` with every exchange and the poll's `summary`; later reports are ignored."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for exchange in list(self._open.values()):
                self._write(exchange.unfinished(), exchange.request)
            self._open.clear()
            self._records.sort(key=lambda record: record.seq)
            if self._anonymizer is not None:
                self._sweep(self._anonymizer)
            index = {
                "format": FORMAT,
                "exporter_version": summary.exporter_version if summary else __version__,
                "anonymized": self._anonymizer is not None,
                "started": self._started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "exchanges": [self._public(record).to_json() for record in self._records],
                "summary": None if summary is None else self._summary_json(summary),
            }
            text = json.dumps(index, indent=1, ensure_ascii=False) + "\n"
            (self.directory / INDEX).write_bytes(self._scrub.bytes(text.encode("utf-8")))

    def _finish(self, exchange: Exchange, record: ExchangeRecord, reply: bytes | None) -> None:
        with self._lock:
            if self._closed or self._open.pop(exchange.seq, None) is None:
                return
            self._write(record, exchange.request, reply)

    def _write(self, record: ExchangeRecord, request: str | None = None, reply: bytes | None = None) -> None:
        """The exchange's files (anonymized, scrubbed) and its place in the index. Under the lock."""
        stem = f"{record.seq:04d}-{record.action.lower()}-{_file_part(record.class_name)}"
        record.request = f"{stem}.request.xml"
        request_bytes = (request if request is not None else "").encode("utf-8")
        if self._anonymizer is not None:
            self._anonymizer.learn_xml(request_bytes, record.class_name)
            if reply is not None:
                self._anonymizer.learn_xml(reply, record.class_name)
            request_bytes = self._anonymizer.xml(request_bytes, record.class_name)
            reply = None if reply is None else self._anonymizer.xml(reply, record.class_name)
            self._learned_at[record.seq] = self._anonymizer.learned
        (self.directory / record.request).write_bytes(self._scrub.bytes(request_bytes))
        if reply is not None:
            record.reply = f"{stem}.reply.xml"
            (self.directory / record.reply).write_bytes(self._scrub.bytes(reply))
        self._records.append(record)

    def _sweep(self, anonymizer: Anonymizer) -> None:
        """Files written before a name was learned (from a later exchange) get that name replaced too."""
        for record in self._records:
            if self._learned_at.get(record.seq) == anonymizer.learned:
                continue
            for name in (record.request, record.reply):
                if name is None:
                    continue
                path = self.directory / name
                data = path.read_bytes()
                swept = anonymizer.xml(data, record.class_name)
                if swept != data:
                    path.write_bytes(self._scrub.bytes(swept))

    def _public(self, record: ExchangeRecord) -> ExchangeRecord:
        """The record as the index shows it: its free text anonymized (when asked)."""
        anonymizer = self._anonymizer
        if anonymizer is None:
            return record
        return ExchangeRecord(
            **{**vars(record),
               "resource_uri": _maybe(anonymizer.text, record.resource_uri),
               "wql": _maybe(anonymizer.wql, record.wql),
               "error": _maybe(anonymizer.text, record.error),
               "request_headers": _values(anonymizer.text, record.request_headers),
               "reply_headers": _values(anonymizer.text, record.reply_headers),
               "http": [{**answer, "reply_headers": _values(anonymizer.text, answer["reply_headers"])}
                        for answer in record.http]},
        )

    def _summary_json(self, summary: Summary) -> dict[str, Any]:
        text: Callable[[str], str] = self._anonymizer.text if self._anonymizer is not None else str
        settings = asdict(summary.settings)
        settings["collectors"] = list(summary.settings.collectors)
        settings["site_code"] = _maybe(text, summary.settings.site_code)
        collectors = {
            name: {**asdict(outcome), "error": _maybe(text, outcome.error)}
            for name, outcome in summary.collectors.items()
        }
        return {"exporter_version": summary.exporter_version, "settings": settings, "collectors": collectors}


class Exchange:
    """One request being sent, reported by `Transport`: its HTTP answers (`watch`), then its end."""

    def __init__(self, recorder: Recorder, seq: int, class_name: str, lane: int, request: str, attempt: int,
                 start: float) -> None:
        self.seq = seq
        self.request = request
        self._recorder = recorder
        self._started = time.monotonic()
        action_uri = _first(_ACTION, request)
        action = _ACTIONS.get(action_uri or "", "other")
        if action_uri is None and re.search(r"<(?:\w+:)?Identify\b", request):
            action = "Identify"
        uri, wql = _first(_RESOURCE_URI, request), _first(_FILTER, request)
        wql = None if wql is None else wql.strip()
        self._record = ExchangeRecord(
            seq=seq, lane=f"{class_name}/{lane}", attempt=attempt, action=action,
            class_name=_class_of(uri, wql) or class_name, resource_uri=uri, wql=wql,
            context=_first(_CONTEXT, request) if action in ("Pull", "Release") else None,
            request="", start=round(start, 6), action_uri=action_uri,
        )
        self._done = False

    def watch(self, session: Any) -> None:
        """Have `session` (a requests session) report its HTTP answers to this exchange.

        A response hook, after the authentication handler's: it sees the final answer, whose
        `history` holds the authentication rounds. One hook per session, pointed at the exchange
        under way (a session sends one request at a time).
        """
        hooks = session.hooks.setdefault("response", [])
        watcher = next((hook for hook in hooks if isinstance(hook, _Watcher)), None)
        if watcher is None:
            watcher = _Watcher()
            hooks.append(watcher)
        watcher.exchange = self

    def answered(self, response: Any) -> None:
        """The final HTTP answer (from the session's hook)."""
        if self._done:
            return
        record = self._record
        record.status = int(response.status_code)
        record.reply_headers = safe_headers(response.headers)
        request = getattr(response, "request", None)
        if request is not None:
            record.request_headers = safe_headers(request.headers)
            record.encrypted = "multipart/" in str(request.headers.get("Content-Type", "")).lower()
        record.http = [{"status": int(earlier.status_code), "reply_headers": safe_headers(earlier.headers)}
                       for earlier in getattr(response, "history", ())]

    def replied(self, reply: bytes | str) -> None:
        self._end(reply.encode("utf-8") if isinstance(reply, str) else reply, None)

    def failed(self, exc: BaseException) -> None:
        body = _reply_of(exc)
        self._end(None if body is None else body.encode("utf-8"), f"{type(exc).__name__}: {short(exc)}")

    def unfinished(self) -> ExchangeRecord:
        """The record of an exchange still under way when the recording closed."""
        self._done = True
        self._record.error = self._record.error or "unfinished when the recording closed"
        return self._record

    def _end(self, reply: bytes | None, error: str | None) -> None:
        if self._done:
            return
        self._done = True
        self._record.duration = round(time.monotonic() - self._started, 6)
        self._record.error = error
        self._recorder._finish(self, self._record, reply)


class _Watcher:
    """The response hook a recorded session carries (see `Exchange.watch`)."""

    exchange: Exchange | None = None

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> None:
        if self.exchange is not None:
            self.exchange.answered(response)


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers without credentials: no Authorization or cookies, challenges by scheme name only."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in _DROPPED_HEADERS:
            continue
        kept[name] = _schemes(value) if lower in _CHALLENGE_HEADERS else str(value)
    return kept


def _schemes(value: str) -> str:
    """`Negotiate TlRMTVNT..., Basic realm="WSMAN"` -> `Negotiate, Basic`."""
    schemes = []
    for part in str(value).split(","):
        word = part.strip().split(" ", 1)[0]
        if word and "=" not in word and re.fullmatch(r"[A-Za-z][\w.-]*", word):
            schemes.append(word)
    return ", ".join(schemes)


def _reply_of(exc: BaseException) -> str | None:
    """The (decrypted) body pywinrm kept of a failed exchange: a fault's, an HTTP error's."""
    if isinstance(exc, WSManFaultError):
        return exc.response or None
    if isinstance(exc, WinRMOperationTimeoutError):
        # pywinrm raises it while handling the WinRMTransportError that carried the fault.
        exc = exc.__context__ if exc.__context__ is not None else exc
    if isinstance(exc, WinRMTransportError):
        return exc.response_text or None
    return None


_ACTION = re.compile(r"<(?:\w+:)?Action\b[^>]*>\s*([^<\s]+)\s*<")
_RESOURCE_URI = re.compile(r"<(?:\w+:)?ResourceURI\b[^>]*>\s*([^<\s]+)\s*<")
_FILTER = re.compile(r"<(?:\w+:)?Filter\b[^>]*>([^<]*)<")
_CONTEXT = re.compile(r"<(?:\w+:)?EnumerationContext\b[^>]*>\s*([^<\s]*)\s*<")
_WQL_FROM = re.compile(r"\bFROM\s+([A-Za-z_]\w*)", re.I)


def _class_of(uri: str | None, wql: str | None) -> str | None:
    if wql:
        match = _WQL_FROM.search(wql)
        return match.group(1) if match else None
    if uri and not uri.endswith("/*"):
        return uri.rstrip("/").rpartition("/")[2] or None
    return None


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return unescape(match.group(1)) if match else None


def _file_part(name: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name or "none")[:60]


def _prepare(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise CaptureError(f"{directory}: not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / INDEX).exists() or any(directory.glob("*.xml")):
        raise CaptureError(f"{directory} already holds a capture: record into a new or empty directory")


def _maybe(convert: Callable[[str], str], value: str | None) -> str | None:
    return None if value is None else convert(value)


def _values(convert: Callable[[str], str], headers: Mapping[str, str]) -> dict[str, str]:
    return {name: convert(value) for name, value in headers.items()}


class Scrubber:
    """Replaces every configured secret in what is written, in each form it may take there:
    as is, XML-escaped (text and attribute), and JSON-escaped."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            forms.update({
                secret, escape(secret), escape(secret, {'"': "&quot;", "'": "&apos;"}),
                json.dumps(secret, ensure_ascii=False)[1:-1], json.dumps(secret)[1:-1],
            })
        # Longest first: a secret containing another is replaced whole.
        encoded = sorted({form.encode(codec) for form in forms for codec in ("utf-8", "utf-16-le")},
                         key=len, reverse=True)
        self._forms = tuple(encoded)

    def bytes(self, data: bytes) -> bytes:
        for form in self._forms:
            data = data.replace(form, SCRUBBED.encode("ascii"))
        return data


# --- anonymizing ------------------------------------------------------------------------------

# Property names (lower case) whose values are names of a kind.
_SITE_PROPERTIES = frozenset({"sitecode", "sourcesite", "parentsitecode", "reportingsitecode", "sitecodeofserver"})
_HOST_PROPERTIES = frozenset({"servername", "machine", "machinename", "siteserver", "sitesystem", "netbiosname",
                              "dnsname", "fqdn", "hostname"})
_NAME_PROPERTIES = frozenset({"name", "packagename", "groupname", "sitename", "displayname", "description",
                              "localizeddisplayname", "localizeddescription", "manufacturer", "comment"})
_ACCOUNT_SUFFIXES = ("by", "username", "user", "account", "owner")
# Classes whose `Name` is a host (the DP's FQDN), not a display name.
_HOST_NAMED_CLASSES = frozenset({"sms_dpstatusinfo", "sms_sitesystemsummarizer", "sms_distributionpointinfo"})
# Elements whose text is protocol bookkeeping (identifiers the replay relies on), never a name.
_BOOKKEEPING = frozenset({"messageid", "relatesto", "enumerationcontext", "action", "operationtimeout",
                          "maxenvelopesize", "maxelements", "datetime"})
# ConfigMgr's reserved site codes and words of the protocol's URIs: never taken for a site code.
_NOT_SITES = frozenset({"AUX", "CON", "NUL", "PRN", "SMS", "WMI", "ORG", "COM", "WWW", "CIM", "XSD", "XML", "DLL",
                        "URI", "SQL", "NAL", "PCK", "NET", "LOG", "EXE", "MSI"})
# Host names of the protocol's namespaces and vendors' sites, and words of its URIs: never names.
_PUBLIC_DOMAINS = ("w3.org", "xmlsoap.org", "dmtf.org", "microsoft.com", "windows.com", "example")
_NOT_HOSTS = frozenset({"localhost", "root", "sms", "wmi", "wbem", "wsman", "schemas", "www", "http", "https",
                        "cimv2", "site", "true", "false"})

_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_SITE = re.compile(r"[A-Za-z0-9]{3}")
_HEX5 = re.compile(r"[0-9A-Fa-f]{5}")
_UNC_HOST = re.compile(r"(?<!\\)\\\\([A-Za-z0-9][A-Za-z0-9.-]*)")
_NAL_SITE = re.compile(r"SMS_SITE=([A-Za-z0-9]{3})(?![A-Za-z0-9])", re.I)
_NAMESPACE_SITE = re.compile(r"(?<![A-Za-z0-9])site_([A-Za-z0-9]{3})(?![A-Za-z0-9])", re.I)
_UPN = re.compile(r"([A-Za-z0-9][\w.-]*)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_URL_HOST = re.compile(r"[a-z][a-z0-9+.-]*://(\[[^\]]*\]|[^/:?#\s]+)", re.I)
# What is replaced: runs of letters, digits, dots and hyphens (host names, site codes, package
# IDs); XML references are skipped whole, so that an entity is never taken for a name.
_TOKEN = re.compile(r"&#?\w+;|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_LABEL = re.compile(r"[^.-]+")
# A tag (its closing slash, its qualified name, the rest), or the text between two tags.
_XML_PART = re.compile(r"<(/?)([^\s/>]*)([^>]*)>|[^<]+")
# Entries a cache of the anonymizer holds at most before it starts again.
_CACHED = 200_000
_ATTRIBUTE = re.compile(r"""([\w:.-]+)(\s*=\s*)(?:"([^"]*)"|'([^']*)')""")
_WQL_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")
# Values no name hides in: numbers, booleans, datetimes, message IDs. (A site code has a letter;
# durations and exponents are left out: `P1D` and `1E5` could be site codes.)
_PLAIN_VALUE = re.compile(
    r"\s*(?:-?\d+(?:\.\d+)?|(?i:true|false)|\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)?"
    r"|\d{14}\.\d{6}[+-]\d{3}|uuid:[0-9A-Fa-f-]+)\s*")


@dataclass
class _Names:
    """Originals of one kind and their stand-ins, made by `make(n)` for the n-th original."""

    make: Callable[[int], str]
    stand_ins: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        return self.stand_ins.get(key)

    def add(self, key: str, taken: Callable[[str], bool] = lambda _: False) -> str:
        found = self.stand_ins.get(key)
        if found is None:
            number = len(self.stand_ins) + 1
            found = self.make(number)
            while taken(found) or found in self.stand_ins.values():
                number += 1
                found = self.make(number)
            self.stand_ins[key] = found
        return found


def _site_stand_in(number: int) -> str:
    letter = "STUVWXYZ"[(number - 1) // 99 % 8]
    return f"{letter}{(number - 1) % 99 + 1:02d}"


class Anonymizer:
    """Stand-ins for the names of an estate, the same throughout a capture.

    It first learns names from where the schema puts them (`learn_xml`: SiteCode, PackageID
    prefixes, NAL and UNC paths, ServerName, Machine, `site_<CODE>` namespaces, the `a:To`
    address, package and group `Name`s, accounts), then replaces them in any text (`xml`,
    `text`): host names, domain names, site codes and the site prefix of package IDs (the five
    hex digits are kept, so a slice keeps its rows), accounts and IP addresses wherever they
    occur as a word, and names wherever they are a whole value. Numbers, booleans, datetimes,
    enumeration contexts, message IDs, element and property names and XML references are never
    touched, so the anonymized capture parses to the same rows. Not thread-safe (the recorder
    calls it under its lock).
    """

    def __init__(self, *, hosts: Iterable[str] = (), accounts: Iterable[str] = ()) -> None:
        self._sites = _Names(_site_stand_in)  # upper case
        self._hosts = _Names(lambda n: f"HOST{n:02d}")  # short names, lower case
        self._domains = _Names(lambda n: f"dom{n}.example")  # lower case
        self._netbios = _Names(lambda n: f"DOMAIN{n}")  # upper case
        self._accounts = _Names(lambda n: f"account{n:02d}")  # lower case
        self._ips = _Names(lambda n: f"192.0.2.{n % 254 + 1}")
        self._names = _Names(lambda n: f"Name {n:04d}")  # exact text
        self._account_pattern: re.Pattern[str] | None = None
        # Caches: values already learned from, values already searched for hosts of known domains
        # (and how many domains were known then), texts already replaced (while nothing new is learned).
        self._seen: set[tuple[str, str, bool, str | None]] = set()
        self._domain_checked: dict[str, int] = {}
        self._replaced: dict[str, str] = {}
        self._replaced_at = -1
        for host in hosts:
            self.learn_host(host)
        for account in accounts:
            self.learn_account(account)

    @property
    def learned(self) -> int:
        """How many names it knows: a file written when it knew fewer may hold one it learned since."""
        kinds = (self._sites, self._hosts, self._domains, self._netbios, self._accounts, self._ips, self._names)
        return sum(len(kind.stand_ins) for kind in kinds)

    # --- learning ---

    def learn_site(self, code: str) -> None:
        code = code.strip().upper()
        if _SITE.fullmatch(code) and code not in _NOT_SITES and any(c.isalpha() for c in code):
            self._sites.add(code, taken=lambda stand_in: stand_in in self._sites.stand_ins)

    def learn_host(self, value: str) -> None:
        host = value.strip().strip("[]").rstrip(".")
        if _IPV4.fullmatch(host):
            if not host.startswith("127."):
                self._ips.add(host)
            return
        if not _HOST.fullmatch(host) or not any(c.isalpha() for c in host) or _public(host.lower()):
            return
        short, _, domain = host.lower().partition(".")
        if short in _NOT_HOSTS:
            return
        self._hosts.add(short)
        if domain:
            self._domains.add(domain)

    def learn_account(self, value: str) -> None:
        value = value.strip()
        upn = _UPN.fullmatch(value)
        if upn is not None:
            user, domain = upn.group(1), upn.group(2).lower()
            if not _public(domain):
                self._domains.add(domain)
        else:
            netbios, _, user = value.rpartition("\\")
            if netbios and _HOST.fullmatch(netbios) and "." not in netbios:
                self._netbios.add(netbios.upper())
            elif netbios:
                self.learn_host(netbios)
        if user and user.lower() not in self._accounts.stand_ins and user.lower() not in _NOT_HOSTS:
            self._accounts.add(user.lower())
            self._account_pattern = None

    def learn_name(self, value: str, kind: str) -> None:
        if value.strip() and value not in self._names.stand_ins:
            number = len(self._names.stand_ins) + 1
            self._names.stand_ins[value] = f"{kind} {number:04d}"

    def learn_xml(self, data: bytes, class_name: str | None) -> None:
        """Learn the names of one request or reply (see the class docstring for where from)."""
        text, _ = _decoded(data)
        values = [value for value in _values_of(text) if value[0] not in _BOOKKEEPING]
        for element, value, attribute in values:
            key = (element, value, attribute, class_name if element == "name" else None)
            if key in self._seen:  # the values of a class repeat row after row (NAL paths, site codes)
                continue
            if len(self._seen) > _CACHED:
                self._seen.clear()
            self._seen.add(key)
            if attribute and element == "machine":
                self.learn_host(value)
            elif not attribute:
                self._learn_property(element, value, class_name)
            self._learn_patterns(value)
        # A host named only in free text, in a domain learned from the schema's places (again
        # when more domains are known than when the value was last looked at).
        domains = len(self._domains.stand_ins)
        if not domains:
            return
        for _, value, _ in values:
            if self._domain_checked.get(value) == domains:
                continue
            if len(self._domain_checked) > _CACHED:
                self._domain_checked.clear()
            self._domain_checked[value] = domains
            for token in _TOKEN.findall(value):
                if "." in token and not token.startswith("&") and self._in_known_domain(token):
                    self.learn_host(token)

    def _learn_property(self, element: str, value: str, class_name: str | None) -> None:
        value = value.strip()
        if not value or _PLAIN_VALUE.fullmatch(value):
            return
        if element in _SITE_PROPERTIES:
            self.learn_site(value)
        elif element.endswith("packageid"):
            package = re.fullmatch(r"([A-Za-z0-9]{3})[0-9A-Fa-f]{5}", value)
            if package is not None:
                self.learn_site(package.group(1))
        elif element in _HOST_PROPERTIES or (element == "pkgserver" and "\\" not in value):
            self.learn_host(value)
        elif element == "to":
            url = _URL_HOST.match(value)
            if url is not None:
                self.learn_host(url.group(1))
        elif element == "name" and ((class_name or "").lower() in _HOST_NAMED_CLASSES or self._is_host(value)):
            self.learn_host(value)
        elif element in _NAME_PROPERTIES:
            self.learn_name(value, _name_kind(element, class_name))
        elif element.endswith(_ACCOUNT_SUFFIXES):
            self.learn_account(value)

    def _learn_patterns(self, value: str) -> None:
        for host in _UNC_HOST.findall(value):
            self.learn_host(host)
        for code in _NAL_SITE.findall(value) + _NAMESPACE_SITE.findall(value):
            self.learn_site(code)
        for user, domain in _UPN.findall(value):
            if not _public(domain.lower()):
                self.learn_account(f"{user}@{domain}")
        for token in _TOKEN.findall(value):
            labels = token.split(".")
            # An FQDN: three labels or more, ending in letters (not a version number).
            if len(labels) >= 3 and labels[-1].isalpha() and len(labels[-1]) >= 2 and not _public(token.lower()):
                self.learn_host(token)

    def _is_host(self, value: str) -> bool:
        key = value.strip().lower()
        return bool(_HOST.fullmatch(key)) and (
            self._hosts.get(key.partition(".")[0]) is not None and (
                "." not in key or self._domains.get(key.partition(".")[2]) is not None
            )
        )

    def _in_known_domain(self, token: str) -> bool:
        lower = token.lower()
        dot = lower.find(".")
        while dot >= 0:
            if lower[dot + 1:] in self._domains.stand_ins:
                return True
            dot = lower.find(".", dot + 1)
        return False

    # --- replacing ---

    def xml(self, data: bytes, class_name: str | None) -> bytes:
        """A request or reply with every learned name replaced; markup, bookkeeping and plain values kept."""
        text, codec = _decoded(data)
        self._fresh()
        parts: list[str] = []
        for element, match in _parts(text):
            if match.group(2) is None:
                parts.append(self._text_node(element, match.group()))
            elif not match.group(1) and "=" in match.group(3):
                parts.append(_ATTRIBUTE.sub(self._attribute, match.group()))
            else:
                parts.append(match.group())
        return _encoded("".join(parts), codec)

    def text(self, value: str) -> str:
        """A plain string (an index entry, an error message) with every learned name replaced."""
        self._fresh()
        whole = self._names.get(value)
        if whole is not None:
            return whole
        return self._words(value)

    def wql(self, query: str) -> str:
        """A WQL query with the names in its string literals replaced (property and class names kept)."""
        self._fresh()
        return _WQL_LITERAL.sub(lambda literal: self._words(literal.group()), query)

    def _fresh(self) -> None:
        """Forget the replacements made before names were learned since."""
        learned = self.learned
        if learned != self._replaced_at or len(self._replaced) > _CACHED:
            self._replaced.clear()
            self._replaced_at = learned

    def _attribute(self, match: re.Match[str]) -> str:
        name, equals, double, single = match.groups()
        if name.startswith("xsi:") or name in ("xml:lang",):
            return match.group()
        value = self._words(double if double is not None else single)
        return f'{name}{equals}"{value}"' if double is not None else f"{name}{equals}'{value}'"

    def _text_node(self, element: str, text: str) -> str:
        if element in _BOOKKEEPING or _PLAIN_VALUE.fullmatch(text):
            return text
        if element == "filter":
            return self.wql(text)
        whole = self._names.get(unescape(text))
        if whole is not None:
            return escape(whole)
        return self._words(text)

    def _words(self, text: str) -> str:
        done = self._replaced.get(text)
        if done is not None:
            return done
        words = text
        if self._accounts.stand_ins:
            words = self._account_regex().sub(lambda m: _styled(self._accounts.stand_ins[m.group().lower()],
                                                                m.group()), words)
        words = _TOKEN.sub(lambda match: self._token(match.group()), words)
        self._replaced[text] = words
        return words

    def _account_regex(self) -> re.Pattern[str]:
        if self._account_pattern is None:
            names = sorted(self._accounts.stand_ins, key=len, reverse=True)
            self._account_pattern = re.compile(
                r"(?<![\w.-])(?:" + "|".join(re.escape(name) for name in names) + r")(?![\w-])", re.I)
        return self._account_pattern

    def _token(self, token: str) -> str:
        if token.startswith("&") or _public(token.lower()):
            return token
        if "." in token:
            dotted = self._dotted(token)
            if dotted is not None:
                return dotted
        found = self._word(token)
        if found is not None:
            return found
        if "." in token or "-" in token:
            return _LABEL.sub(lambda label: self._word(label.group()) or label.group(), token)
        return token

    def _dotted(self, token: str) -> str | None:
        """A host in a known domain (the longest known domain it ends with), a domain, an IP address."""
        lower = token.lower()
        ip = self._ips.get(token)
        if ip is not None:
            return ip
        domain = self._domains.get(lower)
        if domain is not None:
            return _styled(domain, token)
        for i, ch in enumerate(lower):
            if ch == ".":
                domain = self._domains.get(lower[i + 1:])
                if domain is not None:
                    head = token[:i]
                    host = self._word(head) or _LABEL.sub(lambda label: self._word(label.group()) or label.group(),
                                                          head)
                    return f"{host}.{_styled(domain, token[i + 1:])}"
        return None

    def _word(self, token: str) -> str | None:
        """A short host name, a site code, a NetBIOS domain, an account, or a package ID's site prefix."""
        lower, upper = token.lower(), token.upper()
        for names, key in ((self._hosts, lower), (self._sites, upper), (self._netbios, upper),
                           (self._accounts, lower)):
            found = names.get(key)
            if found is not None:
                return _styled(found, token)
        if len(token) == 8 and _HEX5.fullmatch(token[3:]):
            site = self._sites.get(upper[:3])
            if site is not None:
                return _styled(site, token[:3]) + token[3:]
        return None


def _public(lower: str) -> bool:
    return lower in _NOT_HOSTS or any(lower == d or lower.endswith("." + d) for d in _PUBLIC_DOMAINS)


def _styled(stand_in: str, original: str) -> str:
    """The stand-in in the original's case: `site_abc` stays lower case, `ABC` upper case."""
    letters = [c for c in original if c.isalpha()]
    if letters and all(c.islower() for c in letters):
        return stand_in.lower()
    if letters and all(c.isupper() for c in letters):
        return stand_in.upper()
    return stand_in


def _name_kind(element: str, class_name: str | None) -> str:
    if element != "name" and element != "packagename":
        return "Text"
    lower = (class_name or "").lower()
    return "Group" if "group" in lower else "Package" if "package" in lower else "Name"


def _parts(text: str) -> Iterator[tuple[str, re.Match[str]]]:
    """Each tag and text node of a document, with the element a text node is in (its local name,
    lower case; "" for a tag)."""
    stack: list[str] = []
    for match in _XML_PART.finditer(text):
        name = match.group(2)
        if name is None:
            yield (stack[-1] if stack else ""), match
            continue
        yield "", match
        if match.group(1):
            if stack:
                stack.pop()
        elif name[:1] not in ("?", "!") and not match.group(3).endswith("/"):
            stack.append(name.rpartition(":")[2].lower())


def _values_of(text: str) -> Iterator[tuple[str, str, bool]]:
    """(element or attribute local name, unescaped value, whether an attribute) of every text node
    and attribute value."""
    for element, match in _parts(text):
        if match.group(2) is None:
            if element and not match.group().isspace():
                yield element, unescape(match.group(), {"&#13;": "\r"}), False
        elif not match.group(1) and "=" in match.group(3):
            for name, _, double, single in _ATTRIBUTE.findall(match.group(3)):
                yield name.rpartition(":")[2].lower(), unescape(double or single, {"&quot;": '"', "&apos;": "'"}), True


def _decoded(data: bytes) -> tuple[str, str]:
    """The text of a body and how to encode it back byte for byte (bytes that are not text survive)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    return data.decode("utf-8", "surrogateescape"), "utf-8"


def _encoded(text: str, codec: str) -> bytes:
    return text.encode(codec) if codec == "utf-16" else text.encode("utf-8", "surrogateescape")


# --- reading back -----------------------------------------------------------------------------


def load_capture(directory: str | os.PathLike[str]) -> Capture:
    """The capture in `directory`; `CaptureError` saying what is wrong when it is not one."""
    folder = Path(directory)
    path = folder / INDEX
    if not folder.is_dir():
        raise CaptureError(f"{folder}: no such capture directory")
    if not path.is_file():
        raise CaptureError(f"{folder}: no {INDEX}: not a capture made with --record, or its poll never finished")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CaptureError(f"{path}: not valid JSON ({exc})") from None
    reader = _Reader(path)
    data = reader.mapping(index, "the index")
    if data.get("format") != FORMAT:
        raise CaptureError(f"{path}: format {data.get('format')!r}, this exporter reads format {FORMAT}")
    exchanges = tuple(reader.exchange(item, f"exchanges[{n}]", folder)
                      for n, item in enumerate(reader.list(data.get("exchanges"), "exchanges")))
    summary = None if data.get("summary") is None else reader.summary(data["summary"])
    return Capture(folder, exchanges, summary, bool(data.get("anonymized")))


class _Reader:
    """Typed reads of the index's JSON; every mistake a `CaptureError` naming the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, what: str) -> CaptureError:
        return CaptureError(f"{self.path}: {where}: {what}")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "expected an object")
        return value

    def list(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, "expected a list")
        return value

    def get(self, data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str,
            optional: bool = False) -> Any:
        value = data.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
            wanted = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(f"{where}.{key}", f"expected {wanted}{' or null' if optional else ''}, got {value!r}")
        return value

    def exchange(self, value: Any, where: str, folder: Path) -> ExchangeRecord:
        data = self.mapping(value, where)
        record = ExchangeRecord(
            seq=self.get(data, "seq", int, where), lane=self.get(data, "lane", str, where),
            attempt=self.get(data, "attempt", int, where), action=self.get(data, "action", str, where),
            class_name=self.get(data, "class", str, where, True),
            resource_uri=self.get(data, "resource_uri", str, where, True),
            wql=self.get(data, "wql", str, where, True), context=self.get(data, "context", str, where, True),
            request=self.get(data, "request", str, where), reply=self.get(data, "reply", str, where, True),
            status=self.get(data, "status", int, where, True), encrypted=bool(data.get("encrypted")),
            action_uri=self.get(data, "action_uri", str, where, True),
            error=self.get(data, "error", str, where, True),
            start=float(self.get(data, "start", (int, float), where)),
            duration=self.get(data, "duration", (int, float), where, True),
            request_headers=self.mapping(data.get("request_headers", {}), f"{where}.request_headers"),
            reply_headers=self.mapping(data.get("reply_headers", {}), f"{where}.reply_headers"),
            http=self.list(data.get("http", []), f"{where}.http"),
        )
        for key, name in (("request", record.request), ("reply", record.reply)):
            if name is not None and (Path(name).name != name or not (folder / name).is_file()):
                raise self.fail(f"{where}.{key}", f"file {name!r} is missing from {folder}")
        return record

    def summary(self, value: Any) -> Summary:
        data = self.mapping(value, "summary")
        settings = self.settings(data.get("settings"), "summary.settings")
        outcomes = self.mapping(data.get("collectors"), "summary.collectors")
        return Summary(
            settings=settings,
            collectors={name: self.outcome(outcome, f"summary.collectors.{name}")
                        for name, outcome in outcomes.items()},
            exporter_version=self.get(data, "exporter_version", str, "summary"),
        )

    def settings(self, value: Any, where: str) -> Settings:
        data = self.mapping(value, where)
        return Settings(
            scheme=self.get(data, "scheme", str, where), transport=self.get(data, "transport", str, where),
            message_encryption=self.get(data, "message_encryption", str, where),
            parallel_enumerations=self.get(data, "parallel_enumerations", int, where),
            site_code=self.get(data, "site_code", str, where, True),
            property_list=self.get(data, "property_list", bool, where),
            collectors=tuple(str(name) for name in self.list(data.get("collectors"), f"{where}.collectors")),
        )

    def outcome(self, value: Any, where: str) -> CollectorOutcome:
        data = self.mapping(value, where)
        return CollectorOutcome(
            rows=self.get(data, "rows", int, where), ok=self.get(data, "ok", bool, where),
            reason=self.get(data, "reason", str, where, True), error=self.get(data, "error", str, where, True),
        )
