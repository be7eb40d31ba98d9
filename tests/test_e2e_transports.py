"""End to end, every way a Windows estate authenticates WinRM: the installed exporter polls the
WS-Management test server through real pywinrm over each transport, with the default collectors
plus dp_content_state, and every family is exact against the data set.

Each transport is proven against a real implementation of the other side: pyspnego's NTLM and
CredSSP acceptors, a real MIT KDC with GSSAPI for Kerberos, OpenSSL for TLS, channel binding and
client certificates. The secret checks of the fault matrix apply to each: the password (or key)
is in none of the log, /metrics, /probe, or the landing page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Kerberos, StartExporter, labels, parse_samples, promtool_check_metrics
from datasets import single_site_dataset
from expected import check_collector_up, check_collectors, check_target
from wsman_server import DEFAULT_USERS, WSManServer

USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
COLLECTORS = ("package_status", "package_info", "dp_info", "dp_content_state", "dp_status", "dp_drive", "dp_groups")
DATA = single_site_dataset("ABC", packages=30, servers=6, seed=5)
NAMESPACE = "root\\SMS\\site_ABC"


@dataclass
class Transport:
    """One way to sign in: the server it needs, the target's auth and tls keys, the secret to look for."""

    server: Callable[[Any], dict[str, Any]]  # kerberos fixture -> WSManServer keyword arguments
    auth: Callable[[Any, Path], str]  # (kerberos fixture, a folder for files) -> the YAML auth mapping
    scheme: str = "http"
    secrets: Callable[[Any], list[str]] = field(default=lambda krb: [PASSWORD])
    env: Callable[[Any, Path], dict[str, str]] = field(default=lambda krb, folder: {})
    kerberos: bool = False


def _password_file(folder: Path, password: str) -> Path:
    path = folder / "cm_password"
    path.write_text(password + "\n")
    return path


def _kerberos_env(krb: Kerberos, folder: Path) -> dict[str, str]:
    return krb.env


def _env_ccache(krb: Kerberos, folder: Path) -> dict[str, str]:
    ccache = f"FILE:{folder / 'krb5cc'}"
    krb.realm.kinit("svc-exporter", krb.password, ccache)
    return {**krb.env, "KRB5CCNAME": ccache}


TRANSPORTS = {
    "ntlm_http_sealed": Transport(
        server=lambda krb: {"auth": ("ntlm",)},
        auth=lambda krb, folder: f"{{transport: ntlm, username: '{USER}', "
                                 f"password_file: {_password_file(folder, PASSWORD)}}}",
    ),
    "basic_https": Transport(
        server=lambda krb: {"auth": ("basic",), "tls": True},
        auth=lambda krb, folder: f"{{transport: basic, username: '{USER}', password_env: CM_PASSWORD}}",
        scheme="https",
        env=lambda krb, folder: {"CM_PASSWORD": PASSWORD},
    ),
    "kerberos_http_sealed_password": Transport(
        server=lambda krb: {"auth": ("kerberos",), "kerberos_keytab": krb.service_keytab},
        auth=lambda krb, folder: f"{{transport: kerberos, username: {krb.user}, "
                                 f"password_file: {_password_file(folder, krb.password)}, "
                                 "kerberos_hostname_override: cm01.corp.example.com}",
        secrets=lambda krb: [krb.password],
        env=_kerberos_env,
        kerberos=True,
    ),
    "kerberos_https_keytab": Transport(
        server=lambda krb: {"auth": ("kerberos",), "kerberos_keytab": krb.service_keytab, "tls": True},
        auth=lambda krb, folder: f"{{transport: kerberos, keytab_file: {krb.client_keytab}, "
                                 "kerberos_service: WSMAN, kerberos_hostname_override: cm01.corp.example.com}",
        scheme="https",
        secrets=lambda krb: [krb.password],
        env=_kerberos_env,
        kerberos=True,
    ),
    "kerberos_http_environment_cache": Transport(
        server=lambda krb: {"auth": ("kerberos",), "kerberos_keytab": krb.service_keytab},
        auth=lambda krb, folder: "{transport: kerberos, kerberos_hostname_override: cm01.corp.example.com}",
        secrets=lambda krb: [krb.password],
        env=_env_ccache,
        kerberos=True,
    ),
}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> Iterator[tuple[str, Transport, Any]]:
    case = TRANSPORTS[request.param]
    krb = request.getfixturevalue("kerberos") if case.kerberos else None
    yield request.param, case, krb


def test_every_family_exact_over_each_transport_and_no_secret_anywhere(
    transport: tuple[str, Transport, Any], tmp_path: Path, run_exporter: StartExporter, promtool: str,
) -> None:
    name, case, krb = transport
    with WSManServer(DATA, **case.server(krb)) as provider:
        tls = f"\n     tls: {{ca_file: {provider.ca_file}}}" if provider.ca_file else ""
        config = tmp_path / "config.yaml"
        config.write_text(
            f"defaults: {{interval: 30s, timeout: 10s, collectors: [{', '.join(COLLECTORS)}]}}\n"
            "targets:\n"
            f"  - name: abc\n     source: winrm\n     host: 127.0.0.1\n     port: {provider.port}\n"
            f"     scheme: {case.scheme}\n     auth: {case.auth(krb, tmp_path)}{tls}\n"
            .replace("\n     ", "\n    ")
        )
        started = time.monotonic()
        exporter = run_exporter(config, env=case.env(krb, tmp_path))
        exporter.wait_ready()
        ready = time.monotonic() - started
        text = exporter.scrape()
        probe = exporter.scrape("/probe?target=abc")
        landing = exporter.get("/").text
        log = exporter.log()
    promtool_check_metrics(promtool, text)
    got = parse_samples(text)
    assert got["sccm_up"] == {labels(target="abc"): 1.0}, log[-3000:]
    check_collector_up(got, "abc", dict.fromkeys(COLLECTORS, 1.0))
    check_target(got, "abc", "ABC", DATA[NAMESPACE]["SMS_PackageStatus"])  # site discovered, then read
    check_collectors(got, "abc", "ABC", DATA[NAMESPACE], COLLECTORS[1:])
    for secret in case.secrets(krb):
        for where, content in (("log", log), ("/metrics", text), ("/probe", probe), ("/", landing)):
            assert secret not in content, f"{name}: the secret is in {where}"
    for where, content in (("log", log), ("/metrics", text), ("/", landing)):
        assert "Negotiate " not in content and "Authorization" not in content, f"{name}: a token in {where}"
    duration = got["sccm_poll_duration_seconds"][labels(target="abc")]
    print(f"\n{name}: first poll {duration:.3f} s (process start to ready {ready:.2f} s)")
