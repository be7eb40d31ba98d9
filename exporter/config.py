"""The YAML configuration of design.md: typed, validated up front, errors by key path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Scheme = Literal["https", "http"]
Transport = Literal["ntlm", "kerberos", "credssp", "basic", "certificate"]
Encryption = Literal["auto", "always", "never"]
PerRow = Literal["all", "not_installed", "none"]
SourceKind = Literal["winrm", "file", "demo"]


class ConfigError(Exception):
    """The configuration is wrong. Each message names the key path and what is allowed.

    `errors` holds every problem found (the loader reports them all at once, not the first).
    """

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class AuthConfig:
    transport: Transport = "ntlm"
    username: str | None = None
    # The resolved password (from password_file, password_env or password). repr=False keeps it
    # out of every repr, traceback and log line.
    password: str | None = field(default=None, repr=False)
    message_encryption: Encryption = "auto"
    allow_unencrypted: bool = False


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
    site_code: str | None = None
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    # file
    path: str | None = None
    # demo
    packages: int = 40
    servers: int = 12
    seed: int | None = None

    @property
    def endpoint(self) -> str:
        """The WS-Management endpoint URL of a winrm target."""
        host = self.host or ""
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal
        return f"{self.scheme}://{host}:{self.port}/wsman"


@dataclass(frozen=True)
class Config:
    targets: tuple[TargetConfig, ...]

    def target(self, name: str) -> TargetConfig | None:
        return next((t for t in self.targets if t.name == name), None)
