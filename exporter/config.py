"""The YAML configuration (docs/configuration.md): typed, validated up front, errors by key path.

`load_config(path)` and `parse_config(text)` read the file into the frozen dataclasses below or
raise `ConfigError` with every problem found, each as `<key path>: <what is wrong, what is
allowed>`, so that one run of `--check-config` shows the whole list instead of one mistake at a
time. Nothing here keeps state between calls: a reload simply parses again.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from exporter.collectors import CORE, DEFAULTS, SPECS
from exporter.families import PerRow
from exporter.validation import (
    Checker,
    ValidationError,
    item_path,
    key_path,
    missing,
    parse_document,
    read_document,
    suggest,
)

Scheme = Literal["https", "http"]
Transport = Literal["ntlm", "kerberos", "credssp", "basic", "certificate"]
Encryption = Literal["auto", "always", "never"]
KerberosService = Literal["HTTP", "WSMAN"]
SourceKind = Literal["winrm", "file", "demo"]
Collector = str  # a name of exporter.collectors.SPECS

SCHEMES: tuple[Scheme, ...] = get_args(Scheme)
TRANSPORTS: tuple[Transport, ...] = get_args(Transport)
ENCRYPTIONS: tuple[Encryption, ...] = get_args(Encryption)
PER_ROWS: tuple[PerRow, ...] = get_args(PerRow)
SOURCE_KINDS: tuple[SourceKind, ...] = get_args(SourceKind)
# Every registered collector, in order; the default set (the core one always runs).
COLLECTORS: tuple[Collector, ...] = tuple(SPECS)
DEFAULT_COLLECTORS: frozenset[Collector] = DEFAULTS
# winrm: enumerations of SMS_PackageStatus run at once, each over a slice of the PackageIDs. Four
# hide most of the round trips of a large site; 16 is the number of slices (hex digits).
DEFAULT_PARALLEL_ENUMERATIONS = 4
MAX_PARALLEL_ENUMERATIONS = 16
# A site has at most a few million SMS_PackageStatus rows; a table far larger is a fault, and
# would hold memory the exporter cannot spare.
DEFAULT_MAX_ROWS = 5_000_000
MAX_MAX_ROWS = 1_000_000_000
# Windows caps a reply at MaxEnvelopeSize (500 KiB by default, 150 KiB on old systems); 16 MiB
# leaves room for any server setting while refusing a runaway body before it is parsed.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MIN_RESPONSE_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 1024 * 1024 * 1024


class ConfigError(ValidationError):
    """The configuration is wrong. Each message names the key path and what is allowed.

    `errors` holds every problem found (the loader reports them all at once, not the first).
    """


@dataclass(frozen=True)
class AuthConfig:
    transport: Transport = "ntlm"
    username: str | None = None
    # The resolved password (from password_file, password_env or password). repr=False keeps it
    # out of every repr, traceback and log line.
    password: str | None = field(default=None, repr=False)
    message_encryption: Encryption = "auto"
    allow_unencrypted: bool = False
    # kerberos only: tickets from this client keytab (got and renewed by the exporter itself),
    # the SPN's service class, and its host when `host` is an IP address or an alias.
    keytab_file: str | None = None
    kerberos_service: KerberosService = "HTTP"
    kerberos_hostname_override: str | None = None


@dataclass(frozen=True)
class TLSConfig:
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class TargetConfig:
    name: str
    source: SourceKind
    interval: float  # seconds
    timeout: float  # seconds
    per_row: PerRow
    stale_after: float  # seconds
    # winrm
    host: str | None = None
    port: int | None = None  # resolved: 5986 for https, 5985 for http when left out
    scheme: Scheme = "https"
    # Any source: winrm finds it from SMS_ProviderLocation when None; file uses it for rows
    # without SiteCode; demo names its simulated site with it.
    site_code: str | None = None
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    # file
    path: str | None = None
    # demo
    packages: int = 40
    servers: int = 12
    seed: int | None = None
    # winrm: how many enumerations of SMS_PackageStatus run at once (disjoint PackageID slices).
    parallel_enumerations: int = DEFAULT_PARALLEL_ENUMERATIONS
    # The enabled collectors (`collectors:`, exporter.collectors.SPECS); always holds the core one.
    collectors: frozenset[Collector] = DEFAULT_COLLECTORS
    # Limits (issue 5): a poll yielding more rows fails (reason other); a WS-Management reply
    # body larger than this is refused before it is parsed (reason parse).
    max_rows: int = DEFAULT_MAX_ROWS
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    @property
    def endpoint(self) -> str:
        """The WS-Management endpoint URL of a winrm target."""
        host = self.host or ""
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal
        return f"{self.scheme}://{host}:{self.port}/wsman"

    @property
    def spn(self) -> str:
        """The Kerberos service principal name asked for: `HTTP/cm01.corp.example.com` by default."""
        host = self.auth.kerberos_hostname_override or self.host or ""
        return f"{self.auth.kerberos_service}/{host}"


@dataclass(frozen=True)
class Config:
    targets: tuple[TargetConfig, ...]

    def target(self, name: str) -> TargetConfig | None:
        return next((t for t in self.targets if t.name == name), None)


# --- durations ----------------------------------------------------------------------------------

# Prometheus' model.ParseDuration: whole numbers, each unit at most once, largest unit first.
_DURATION_RE = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?"
)
_UNIT_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
# Prometheus refuses what overflows an int64 of nanoseconds (about 292 years); so do we.
_MAX_DURATION_MS = (2**63 - 1) // 1_000_000
_DURATION_HELP = "use whole numbers with units y, w, d, h, m, s, ms, largest first, such as 30s, 5m or 1h30m"


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus-style duration (`30s`, `5m`, `1h30m`, `500ms`, `2d`, `1w`, `1y`).

    Raises ValueError saying what is wrong. A bare number is refused: `300` could mean seconds
    or milliseconds, and a config that guesses would poll a provider 1000 times too often.
    """
    if text == "":
        raise ValueError(f"an empty string is not a duration; {_DURATION_HELP}")
    if text.isdecimal():
        raise ValueError(f"{text!r} has no unit; write {text}s for seconds")
    if text.startswith("-"):
        raise ValueError(f"{text!r} is negative; a duration must be 0s or more")
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration; {_DURATION_HELP}")
    total_ms = 0
    for digits, unit_ms in zip(match.groups(), _UNIT_MS, strict=True):
        if digits is not None:
            if len(digits) > 20:  # beyond any sane value, and before int() meets its digit limit
                raise ValueError(f"{text!r} is too long; the limit is about 292 years")
            total_ms += int(digits) * unit_ms
    if total_ms > _MAX_DURATION_MS:
        raise ValueError(f"{text!r} is too long; the limit is about 292 years")
    return total_ms / 1000


# --- loading ------------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the configuration file; relative paths in it are taken from its folder."""
    text, base_dir = read_document(path, "configuration file", ConfigError)
    return parse_config(text, base_dir=base_dir, environ=os.environ)


def parse_config(text: str, *, base_dir: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Validate configuration text.

    Relative paths (password_file, tls files, file source paths) are taken from `base_dir`, the
    current directory when None; `password_env` is looked up in `environ`, `os.environ` when None.
    """
    data = parse_document(text, ConfigError)
    ctx = _Context(
        base_dir=os.path.abspath(base_dir if base_dir is not None else os.getcwd()),
        environ=os.environ if environ is None else environ,
    )
    config = _config(ctx, data)
    if ctx.errors or config is None:
        raise ConfigError(ctx.errors)
    return config


# --- one parse --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context(Checker):
    """One parse: the validation kit's checker, and where password_env looks variables up."""

    environ: Mapping[str, str] = field(kw_only=True)


@dataclass(frozen=True)
class _Duration:
    seconds: float
    text: str
    origin: str  # the key path it was set at, or "the default"


def _duration(ctx: _Context, section: dict[Any, Any], key: str, prefix: str) -> _Duration | None:
    value = section.get(key)
    if value is None:
        return None
    path = key_path(prefix, key)
    if isinstance(value, bool) or not isinstance(value, str | int):  # int: `interval: 300`
        ctx.error(path, f"must be a duration such as 30s, 5m or 1h30m (got {ctx.show(value)})")
        return None
    if isinstance(value, int):
        ctx.error(path, f"{value} has no unit; write {value}s for seconds (a duration such as 30s, 5m or 1h30m)")
        return None
    text = value
    try:
        return _Duration(parse_duration(text), text, path)
    except ValueError as exc:
        ctx.error(path, str(exc))
        return None


# --- the sections -------------------------------------------------------------------------------

_TOP_KEYS = ("defaults", "targets")
# parallel_enumerations may be given under defaults: for every winrm target, but on a target only
# where it means something (winrm).
_DEFAULT_KEYS = (
    "interval", "timeout", "per_row", "stale_after", "collectors", "parallel_enumerations", "max_rows",
    "max_response_bytes",
)  # fmt: skip
_COMMON_KEYS = (
    "name", "source", "site_code", "interval", "timeout", "per_row", "stale_after", "collectors", "max_rows",
)  # fmt: skip
_SOURCE_KEYS: dict[SourceKind, tuple[str, ...]] = {
    "winrm": ("host", "port", "scheme", "auth", "tls", "parallel_enumerations", "max_response_bytes"),
    "file": ("path",),
    "demo": ("packages", "servers", "seed"),
}
_AUTH_KEYS = (
    "transport", "username", "password_file", "password_env", "password",
    "message_encryption", "allow_unencrypted", "keytab_file", "kerberos_service", "kerberos_hostname_override",
)  # fmt: skip
_KERBEROS_KEYS = ("keytab_file", "kerberos_service", "kerberos_hostname_override")
KERBEROS_SERVICES: tuple[KerberosService, ...] = get_args(KerberosService)
_PASSWORD_KEYS = ("password_file", "password_env", "password")
_TLS_KEYS = ("verify", "ca_file", "cert_file", "key_file")
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SITE_CODE_RE = re.compile(r"[A-Za-z0-9]{3}")
_PASSWORD_FILE_LIMIT = 64 * 1024


@dataclass(frozen=True)
class _Defaults:
    """The settings every target inherits; each may be overridden on the target."""

    interval: _Duration = _Duration(300.0, "5m", "the default")
    timeout: _Duration = _Duration(120.0, "2m", "the default")
    per_row: PerRow = "all"
    stale_after: _Duration = _Duration(900.0, "15m", "the default")
    parallel_enumerations: int = DEFAULT_PARALLEL_ENUMERATIONS
    collectors: frozenset[Collector] = DEFAULT_COLLECTORS
    collectors_origin: str = "the default"  # the key path the list was set at
    max_rows: int = 0  # 0: not set, DEFAULT_MAX_ROWS
    max_response_bytes: int = 0  # 0: not set, DEFAULT_MAX_RESPONSE_BYTES


def _config(ctx: _Context, data: Any) -> Config | None:
    if data is None:
        ctx.error("top level", "the configuration is empty; it needs at least a `targets:` list")
        return None
    if not isinstance(data, dict):
        ctx.error("top level", f"must be a mapping with keys defaults and targets (got {ctx.show(data)})")
        return None
    misplaced = {key: "not a top-level key; put it under defaults: or on a target" for key in _DEFAULT_KEYS}
    ctx.keys(data, "", _TOP_KEYS, misplaced=misplaced)
    defaults = _defaults(ctx, data.get("defaults"))
    targets = _targets(ctx, data, defaults)
    return Config(targets=targets) if targets is not None else None


def _defaults(ctx: _Context, value: Any) -> _Defaults | None:
    """The defaults: block over the built-in defaults; None when it is wrong (errors recorded)."""
    before = len(ctx.errors)
    section = ctx.section(value, "defaults", "settings every target inherits")
    if section is None:
        return None
    ctx.keys(section, "defaults", _DEFAULT_KEYS)
    defaults = _inherit(ctx, section, "defaults", _Defaults())
    if len(ctx.errors) == before:
        _check_timing(ctx, defaults, "defaults")
    return defaults if len(ctx.errors) == before else None


def _inherit(ctx: _Context, section: dict[Any, Any], prefix: str, parent: _Defaults) -> _Defaults:
    """The settings of `section` on top of `parent`'s (built-in defaults, or the defaults: block)."""
    collectors = _collectors(ctx, section.get("collectors"), key_path(prefix, "collectors"))
    return _Defaults(
        interval=_duration(ctx, section, "interval", prefix) or parent.interval,
        timeout=_duration(ctx, section, "timeout", prefix) or parent.timeout,
        per_row=ctx.choice(section, "per_row", prefix, PER_ROWS) or parent.per_row,
        stale_after=_duration(ctx, section, "stale_after", prefix) or parent.stale_after,
        parallel_enumerations=ctx.integer(section, "parallel_enumerations", prefix, 1, MAX_PARALLEL_ENUMERATIONS)
        or parent.parallel_enumerations,
        max_rows=ctx.integer(section, "max_rows", prefix, 1, MAX_MAX_ROWS) or parent.max_rows,
        max_response_bytes=ctx.integer(section, "max_response_bytes", prefix, MIN_RESPONSE_BYTES, MAX_RESPONSE_BYTES)
        or parent.max_response_bytes,
        collectors=parent.collectors if collectors is None else collectors,
        collectors_origin=parent.collectors_origin if collectors is None else key_path(prefix, "collectors"),
    )


def _collectors(ctx: _Context, value: Any, path: str) -> frozenset[Collector] | None:
    """A `collectors:` list: the collectors to run (package_status always runs); None when not set.

    A list, as windows_exporter's `collectors.enabled`: a target's list replaces the inherited
    one, so that what a target runs can be read in one place.
    """
    if value is None:
        return None
    if not isinstance(value, list):
        ctx.error(
            path,
            f"must be a list of collector names such as [package_info, dp_info] (got {ctx.kind(value)}); "
            f"allowed: {', '.join(COLLECTORS)}",
        )
        return None
    chosen: set[Collector] = {CORE}
    for index, name in enumerate(value):
        found = next((collector for collector in COLLECTORS if collector == name), None)
        if found is None:
            ctx.error(
                item_path(path, index),
                f"unknown collector {ctx.show(name)}; allowed: {', '.join(COLLECTORS)}{suggest(name, COLLECTORS)}",
            )
        else:
            chosen.add(found)
    return frozenset(chosen)


def _check_timing(ctx: _Context, settings: _Defaults, prefix: str) -> None:
    """timeout <= interval and stale_after >= interval, reported where the user set a value.

    A pair that comes wholly from above (defaults or built-in) was checked there already, so a
    bad `defaults:` block gives one error, not one per target.
    """

    def where(first: _Duration, second: _Duration) -> str | None:
        own = [d.origin for d in (first, second) if d.origin.startswith(prefix + ".")]
        return own[0] if own else None

    interval, timeout, stale = settings.interval, settings.timeout, settings.stale_after
    path = where(timeout, interval)
    if path and timeout.seconds > interval.seconds:
        ctx.error(
            path,
            f"timeout {timeout.text} ({timeout.origin}) is longer than interval {interval.text} "
            f"({interval.origin}); a poll must end before the next one is due: "
            "set timeout to at most the interval",
        )
    path = where(stale, interval)
    if path and stale.seconds < interval.seconds:
        ctx.error(
            path,
            f"stale_after {stale.text} ({stale.origin}) is shorter than interval {interval.text} "
            f"({interval.origin}); the rows would vanish between two good polls: "
            "set stale_after to at least the interval",
        )
    if interval.seconds <= 0 and interval.origin.startswith(prefix + "."):
        ctx.error(interval.origin, "must be longer than 0s")
    if timeout.seconds <= 0 and timeout.origin.startswith(prefix + "."):
        ctx.error(timeout.origin, "must be longer than 0s")


def _targets(ctx: _Context, data: dict[Any, Any], defaults: _Defaults | None) -> tuple[TargetConfig, ...] | None:
    value = data.get("targets")
    if value is None:
        ctx.error("targets", "required: a list of the SMS Providers (or files, or demo sites) to poll")
        return None
    if not isinstance(value, list):
        ctx.error("targets", f"must be a list of targets (got {ctx.show(value)})")
        return None
    if not value:
        ctx.error("targets", "at least one target is required (got an empty list)")
        return None
    built = [_target(ctx, item, item_path("targets", index), defaults) for index, item in enumerate(value)]
    _check_unique_names(ctx, value)
    targets = tuple(target for target in built if target is not None)
    return targets if len(targets) == len(built) else None


def _check_unique_names(ctx: _Context, items: list[Any]) -> None:
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            where = key_path(item_path("targets", index), "name")
            ctx.error(where, f"duplicate target name {name!r} (also targets[{first[name]}])")
        else:
            first[name] = index


def _target(ctx: _Context, value: Any, prefix: str, defaults: _Defaults | None) -> TargetConfig | None:
    """One target, or None when it is wrong; every problem in it is recorded either way."""
    if not isinstance(value, dict):
        ctx.error(prefix, f"must be a mapping with at least name and source (got {ctx.show(value)})")
        return None
    before = len(ctx.errors)
    source = _target_keys(ctx, value, prefix)
    name = _target_name(ctx, value, prefix)
    settings = _inherit(ctx, value, prefix, defaults or _Defaults())
    # Against a broken defaults: block the comparison would only add confusing errors.
    if defaults is not None and len(ctx.errors) == before:
        _check_timing(ctx, settings, prefix)
    site_code = _site_code(ctx, value, prefix)
    if source is None:
        return None
    base = TargetConfig(
        name=name or "",
        source=source,
        site_code=site_code,
        interval=settings.interval.seconds,
        timeout=settings.timeout.seconds,
        per_row=settings.per_row,
        stale_after=settings.stale_after.seconds,
        parallel_enumerations=settings.parallel_enumerations,
        collectors=_source_collectors(ctx, source, settings, prefix),
        max_rows=settings.max_rows or DEFAULT_MAX_ROWS,
        max_response_bytes=settings.max_response_bytes or DEFAULT_MAX_RESPONSE_BYTES,
    )
    builders = {"winrm": _winrm_target, "file": _file_target, "demo": _demo_target}
    target = builders[source](ctx, value, prefix, base)
    return target if len(ctx.errors) == before else None


def _source_collectors(ctx: _Context, source: SourceKind, settings: _Defaults, prefix: str) -> frozenset[Collector]:
    """The collectors a target runs: a file holds SMS_PackageStatus rows only.

    A file target inheriting the optional collectors from defaults: runs package_status alone;
    one that asks for them itself is told why not.
    """
    if source != "file":
        return settings.collectors
    others = sorted(settings.collectors - {CORE})
    if others and settings.collectors_origin.startswith(prefix + "."):
        ctx.error(settings.collectors_origin, f"the file source reads SMS_PackageStatus only: remove "
                                              f"{', '.join(others)} (only winrm and demo targets run them)")
    return frozenset({CORE})


def _target_keys(ctx: _Context, value: dict[Any, Any], prefix: str) -> SourceKind | None:
    """The target's source, after checking that every key belongs to it."""
    if missing(value, "source"):
        ctx.error(key_path(prefix, "source"), f"required: one of {', '.join(SOURCE_KINDS)}")
    source = ctx.choice(value, "source", prefix, SOURCE_KINDS)
    if source is None:  # unknown source: accept the keys of any source, report only strangers
        every = tuple(key for keys in _SOURCE_KEYS.values() for key in keys)
        ctx.keys(value, prefix, _COMMON_KEYS + every)
        return None
    elsewhere = {
        key: f"belongs to source {other}, not to this target's source {source}"
        for other, keys in _SOURCE_KEYS.items()
        if other != source
        for key in keys
    }
    ctx.keys(value, prefix, _COMMON_KEYS + _SOURCE_KEYS[source], misplaced=elsewhere)
    return source


def _target_name(ctx: _Context, value: dict[Any, Any], prefix: str) -> str | None:
    name = value.get("name")
    path = key_path(prefix, "name")
    if name is None:
        ctx.error(path, "required: a unique name, used as the target label and in /probe?target=")
        return None
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        ctx.error(
            path,
            "must be 1 to 64 letters, digits, '_', '-' or '.', as it is the target label and goes "
            f"in /probe?target= (got {ctx.show(name)})",
        )
        return None
    return name


def _site_code(ctx: _Context, value: dict[Any, Any], prefix: str) -> str | None:
    code = value.get("site_code")
    if code is None:
        return None
    if not isinstance(code, str) or not _SITE_CODE_RE.fullmatch(code):
        hint = "; quote it so YAML keeps it as written" if isinstance(code, int) else ""
        ctx.error(
            key_path(prefix, "site_code"),
            f"must be 3 letters or digits, such as ABC or P01 (got {ctx.show(code)}){hint}",
        )
        return None
    return code.upper()


def _file_target(ctx: _Context, value: dict[Any, Any], prefix: str, base: TargetConfig) -> TargetConfig:
    if missing(value, "path"):
        ctx.error(key_path(prefix, "path"), "required for source file: the exported CSV or JSON file")
    given = ctx.string(value, "path", prefix)
    if given is not None and "\0" in given:
        ctx.error(key_path(prefix, "path"), "must not contain a NUL character")
        given = None
    # The file need not exist yet: a scheduled export on Windows may write it after the exporter
    # starts. Until then each poll fails (sccm_up 0) and the exporter keeps serving.
    return replace(base, path=ctx.resolve(given) if given else None)


def _demo_target(ctx: _Context, value: dict[Any, Any], prefix: str, base: TargetConfig) -> TargetConfig:
    packages = ctx.integer(value, "packages", prefix, 1, 100_000)
    servers = ctx.integer(value, "servers", prefix, 1, 10_000)
    seed = value.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        ctx.error(key_path(prefix, "seed"), f"must be an integer (got {ctx.show(seed)})")
        seed = None
    return replace(base, packages=packages or base.packages, servers=servers or base.servers, seed=seed)


# --- winrm --------------------------------------------------------------------------------------


def _winrm_target(ctx: _Context, value: dict[Any, Any], prefix: str, base: TargetConfig) -> TargetConfig:
    host = _host(ctx, value, prefix)
    scheme = ctx.choice(value, "scheme", prefix, SCHEMES) or "https"
    port = ctx.integer(value, "port", prefix, 1, 65535) or (5986 if scheme == "https" else 5985)
    auth = _auth(ctx, value.get("auth"), key_path(prefix, "auth"), scheme)
    tls = _tls(ctx, value.get("tls"), key_path(prefix, "tls"), scheme, auth.transport if auth else None)
    return replace(
        base,
        host=host,
        port=port,
        scheme=scheme,
        auth=auth or AuthConfig(),
        tls=tls or TLSConfig(),
    )


def _host(ctx: _Context, value: dict[Any, Any], prefix: str) -> str | None:
    path = key_path(prefix, "host")
    if missing(value, "host"):
        ctx.error(path, "required for source winrm: the SMS Provider's host name or IP address")
        return None
    host = ctx.string(value, "host", prefix)
    if host is None:
        return None
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if "/" in host or any(c.isspace() for c in host):
        ctx.error(path, f"must be a host name or IP address only; set scheme and port apart (got {ctx.show(host)})")
    elif ":" in bare and not _is_ipv6(bare):
        ctx.error(path, f"must be a host name or IP address only; put the port in port (got {ctx.show(host)})")
    return bare  # an IPv6 literal without brackets; TargetConfig.endpoint adds them


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _auth(ctx: _Context, value: Any, path: str, scheme: Scheme) -> AuthConfig | None:
    if value is None:
        transports = ", ".join(TRANSPORTS)
        ctx.error(
            path, f"required for source winrm: a mapping with transport ({transports}) and the credentials it needs"
        )
        return None
    section = ctx.section(value, path, "transport and credentials")
    if section is None:
        return None
    ctx.keys(section, path, _AUTH_KEYS)
    if missing(section, "transport"):
        ctx.error(key_path(path, "transport"), f"required: one of {', '.join(TRANSPORTS)}")
    transport = ctx.choice(section, "transport", path, TRANSPORTS)
    encryption = ctx.choice(section, "message_encryption", path, ENCRYPTIONS) or "auto"
    allow_unencrypted = ctx.boolean(section, "allow_unencrypted", path, default=False)
    if transport is not None:
        _check_transport(ctx, path, transport, scheme, encryption, allow_unencrypted)
    username = _username(ctx, section, path, transport)
    password = _password(ctx, section, path, transport, username)
    kerberos = _kerberos(ctx, section, path, transport)
    if transport is None:
        return None
    return AuthConfig(
        transport=transport,
        username=username,
        password=password,
        message_encryption=encryption,
        allow_unencrypted=allow_unencrypted,
        **kerberos,
    )


def _kerberos(ctx: _Context, section: dict[Any, Any], path: str, transport: Transport | None) -> dict[str, Any]:
    """The kerberos-only keys: refused with any other transport, a keytab or a password (not both)."""
    if transport != "kerberos":
        for key in _KERBEROS_KEYS:
            if transport is not None and not missing(section, key):
                ctx.error(key_path(path, key), f"only used with auth.transport kerberos (this target uses {transport})")
        return {}
    keytab = ctx.existing_file(section, "keytab_file", path)
    passwords = [key for key in _PASSWORD_KEYS if not missing(section, key)]
    if keytab is not None and passwords:
        ctx.error(
            key_path(path, "keytab_file"),
            f"set either keytab_file or {passwords[0]}, not both (each is a way to get tickets)",
        )
    host = ctx.string(section, "kerberos_hostname_override", path)
    if host is not None and not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host):
        ctx.error(
            key_path(path, "kerberos_hostname_override"),
            f"must be a host name, such as cm01.corp.example.com (got {ctx.show(host)})",
        )
    return {
        "keytab_file": keytab,
        "kerberos_service": ctx.choice(section, "kerberos_service", path, KERBEROS_SERVICES) or "HTTP",
        "kerberos_hostname_override": host,
    }


def _check_transport(
    ctx: _Context, path: str, transport: Transport, scheme: Scheme, encryption: Encryption, allow: bool
) -> None:
    if transport == "basic" and scheme == "http" and not allow:
        ctx.error(
            key_path(path, "transport"),
            "basic over scheme http is refused: the password would cross the network in clear "
            "(basic has no message encryption); use scheme https, or set auth.allow_unencrypted: true "
            "to accept that",
        )
    if transport == "certificate" and scheme != "https":
        ctx.error(key_path(path, "transport"), "certificate needs scheme https (the certificate is a TLS one)")
    if encryption == "always" and transport in ("basic", "certificate"):
        ctx.error(
            key_path(path, "message_encryption"),
            f"always is only possible with ntlm, kerberos or credssp; {transport} has no message "
            "encryption (use scheme https, and auto or never)",
        )


def _username(ctx: _Context, section: dict[Any, Any], path: str, transport: Transport | None) -> str | None:
    username = ctx.string(section, "username", path)
    if transport == "certificate" and username is not None:
        ctx.error(
            key_path(path, "username"),
            "not used with transport certificate (the server maps the client certificate to a user)",
        )
    needs_username = transport in ("ntlm", "credssp", "basic")
    if needs_username and missing(section, "username"):
        ctx.error(key_path(path, "username"), f"required for transport {transport}, such as CORP\\svc-cm-exporter")
    if transport == "kerberos" and username is not None and "\\" in username:
        ctx.error(
            key_path(path, "username"),
            "kerberos takes the principal name, such as svc-cm-exporter@CORP.EXAMPLE.COM "
            "(DOMAIN\\user is the NTLM form)",
        )
    return username


def _password(
    ctx: _Context, section: dict[Any, Any], path: str, transport: Transport | None, username: str | None
) -> str | None:
    """The password from whichever one of its three keys is set.

    Values of these keys are never shown in a message, not even the file name or variable name:
    a password pasted under the wrong key would otherwise be printed to the log.
    """
    given = [key for key in _PASSWORD_KEYS if not missing(section, key)]
    if len(given) > 1:
        ctx.error(path, f"set only one of password_file, password_env, password (got {' and '.join(given)})")
        return None
    if not given:
        if transport in ("ntlm", "credssp", "basic"):
            ctx.error(path, f"transport {transport} needs a password: set password_file, password_env or password")
        return None
    key = given[0]
    if transport == "certificate":
        ctx.error(key_path(path, key), "not used with transport certificate (it signs in with tls.cert_file)")
        return None
    if transport == "kerberos" and username is None:
        ctx.error(key_path(path, key), "kerberos uses a password only together with auth.username")
        return None
    readers = {"password_file": _password_from_file, "password_env": _password_from_env, "password": _inline}
    return readers[key](ctx, section[key], key_path(path, key))


def _secret_kind(ctx: _Context, value: object) -> str:
    return "an empty string" if value == "" else ctx.kind(value)


def _inline(ctx: _Context, value: Any, path: str) -> str | None:
    if not isinstance(value, str) or value == "":
        ctx.error(path, f"must be a non-empty string (got {_secret_kind(ctx, value)}); put it in quotes")
        return None
    return value


def _password_from_env(ctx: _Context, value: Any, path: str) -> str | None:
    if not isinstance(value, str) or value == "":
        ctx.error(path, f"must be the name of an environment variable (got {_secret_kind(ctx, value)})")
        return None
    try:
        password = ctx.environ.get(value)
    except (UnicodeError, ValueError):  # a name os.environ cannot encode is not set either
        password = None
    if not password:
        state = "is empty" if password == "" else "is not set"
        ctx.error(path, f"the environment variable it names {state}; the password must be in it")
        return None
    return password


def _password_from_file(ctx: _Context, value: Any, path: str) -> str | None:
    if not isinstance(value, str) or value == "":
        ctx.error(path, f"must be the path of a file holding the password (got {_secret_kind(ctx, value)})")
        return None
    file = ctx.resolve(value)
    if not os.path.isfile(file):  # also keeps a FIFO from blocking the load forever
        ctx.error(path, f"the file it names does not exist or is not a file (relative paths start at {ctx.base_dir})")
        return None
    try:
        with open(file, "rb") as handle:
            data = handle.read(_PASSWORD_FILE_LIMIT + 1)
    except OSError as exc:
        ctx.error(path, f"cannot read the file it names ({exc.strerror}; relative paths start at {ctx.base_dir})")
        return None
    if len(data) > _PASSWORD_FILE_LIMIT:
        ctx.error(path, "the file it names is larger than 64 KiB; it should hold only the password")
        return None
    try:
        # A BOM is never part of a password: Windows PowerShell 5.1 writes one with
        # `Set-Content -Encoding UTF8`.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        ctx.error(path, "the file it names is not UTF-8 text")
        return None
    # One line ending only: `echo pw > file` adds one, and a password may end in spaces.
    password = text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text
    if password == "":
        ctx.error(path, "the file it names is empty; it must hold the password")
        return None
    return password


def _tls(ctx: _Context, value: Any, path: str, scheme: Scheme, transport: Transport | None) -> TLSConfig | None:
    section = ctx.section(value, path, "TLS settings")
    if section is None:
        return None
    ctx.keys(section, path, _TLS_KEYS)
    if section and scheme == "http":
        ctx.error(path, "only used with scheme https (this target uses http)")
        return None
    tls = TLSConfig(
        verify=ctx.boolean(section, "verify", path, default=True),  # verification stays on unless refused
        ca_file=ctx.existing_file(section, "ca_file", path),
        cert_file=ctx.existing_file(section, "cert_file", path),
        key_file=ctx.existing_file(section, "key_file", path),
    )
    _check_client_certificate(ctx, section, path, transport)
    return tls


def _check_client_certificate(ctx: _Context, section: dict[Any, Any], path: str, transport: Transport | None) -> None:
    for key in ("cert_file", "key_file"):
        if transport == "certificate" and missing(section, key):
            ctx.error(key_path(path, key), "required for auth.transport certificate (PEM file)")
        elif transport not in ("certificate", None) and not missing(section, key):
            ctx.error(
                key_path(path, key),
                f"only used with auth.transport certificate (this target uses {transport})",
            )
