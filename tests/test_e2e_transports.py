"""End to end, every way a Windows estate authenticates WinRM: the installed exporter polls the
WS-Management test server through real pywinrm over each transport, with the default collectors
plus dp_content_state, and every family is exact against the data set.

Each transport is proven against a real implementation of the other side: pyspnego's NTLM and
CredSSP acceptors, a real MIT KDC with GSSAPI for Kerberos, OpenSSL for TLS, channel binding and
client certificates. The secret checks of the fault matrix apply to each: the password (or key)
is in none of the log, /metrics, /probe, or the landing page; nor in what `--check-target`
prints, whose authentication step names the principal (and for Kerberos the SPN) each one used.
The failures of each transport are in tests/test_kerberos.py, tests/test_winrm_auth.py and
tests/test_e2e_auth.py.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Kerberos, StartExporter, console_script, key_lines, labels, parse_samples, promtool_check_metrics
from datasets import single_site_dataset
from expected import check_collector_up, check_collectors, check_target
from wsman_server import DEFAULT_USERS, CertMapping, WSManServer, cert_thumbprint, issue_client_cert, make_ca

USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
COLLECTORS = ("package_status", "package_info", "dp_info", "dp_content_state", "dp_status", "dp_drive", "dp_groups")
DATA = single_site_dataset("ABC", packages=30, servers=6, seed=5)
NAMESPACE = "root\\SMS\\site_ABC"
UPN = "svc-cm-exporter@corp.example.com"


@dataclass
class Transport:
    """One way to sign in: the server it needs and the target's auth and tls keys (one `setup`),
    the secrets to look for, the environment the exporter runs with."""

    # (kerberos fixture or None, a folder for files) -> (WSManServer keyword arguments, YAML auth
    # mapping, YAML tls mapping or "" for the server's CA alone)
    setup: Callable[[Any, Path], tuple[dict[str, Any], str, str]]
    scheme: str = "http"
    secrets: Callable[[Any, Path], list[str]] = field(default=lambda krb, folder: [PASSWORD])
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


def _ntlm(krb: Any, folder: Path) -> str:
    return f"{{transport: ntlm, username: '{USER}', password_file: {_password_file(folder, PASSWORD)}}}"


def _certificate(krb: Any, folder: Path) -> tuple[dict[str, Any], str, str]:
    ca = make_ca(str(folder))
    cert, key = issue_client_cert(str(folder), ca, "svc-cm-exporter", upn=UPN, stem="client")
    server = {"auth": ("certificate",), "tls": True, "client_ca": ca[0],
              "cert_mappings": [CertMapping(UPN, cert_thumbprint(ca[0]), USER)]}
    return server, "{transport: certificate}", f"cert_file: {cert}, key_file: {key}"


TRANSPORTS = {
    "ntlm_http_sealed": Transport(setup=lambda krb, folder: ({"auth": ("ntlm",)}, _ntlm(krb, folder), "")),
    "ntlm_https_strict_channel_binding": Transport(
        setup=lambda krb, folder: ({"auth": ("ntlm",), "tls": True, "cbt": "strict"}, _ntlm(krb, folder), ""),
        scheme="https",
    ),
    "basic_https": Transport(
        setup=lambda krb, folder: ({"auth": ("basic",), "tls": True},
                                   f"{{transport: basic, username: '{USER}', password_env: CM_PASSWORD}}", ""),
        scheme="https",
        env=lambda krb, folder: {"CM_PASSWORD": PASSWORD},
    ),
    "credssp_https": Transport(
        setup=lambda krb, folder: ({"auth": ("credssp",), "tls": True},
                                   _ntlm(krb, folder).replace("ntlm", "credssp"), ""),
        scheme="https",
    ),
    "certificate": Transport(
        setup=_certificate, scheme="https",
        secrets=lambda krb, folder: [PASSWORD, *key_lines(*folder.glob("*key*.pem"))],
    ),
    "kerberos_http_sealed_password": Transport(
        setup=lambda krb, folder: (
            {"auth": ("kerberos",), "kerberos_keytab": krb.service_keytab},
            f"{{transport: kerberos, username: {krb.user}, password_file: {_password_file(folder, krb.password)}, "
            "kerberos_hostname_override: cm01.corp.example.com}", ""),
        secrets=lambda krb, folder: [krb.password],
        env=_kerberos_env,
        kerberos=True,
    ),
    "kerberos_https_keytab": Transport(
        setup=lambda krb, folder: (
            {"auth": ("kerberos",), "kerberos_keytab": krb.service_keytab, "tls": True, "cbt": "strict"},
            f"{{transport: kerberos, keytab_file: {krb.client_keytab}, kerberos_service: WSMAN, "
            "kerberos_hostname_override: cm01.corp.example.com}", ""),
        scheme="https",
        secrets=lambda krb, folder: [krb.password],
        env=_kerberos_env,
        kerberos=True,
    ),
    "kerberos_http_environment_cache": Transport(
        setup=lambda krb, folder: (
            {"auth": ("kerberos",), "kerberos_keytab": krb.service_keytab},
            "{transport: kerberos, kerberos_hostname_override: cm01.corp.example.com}", ""),
        secrets=lambda krb, folder: [krb.password],
        env=_env_ccache,
        kerberos=True,
    ),
}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> Iterator[tuple[str, Transport, Any]]:
    case = TRANSPORTS[request.param]
    krb = request.getfixturevalue("kerberos") if case.kerberos else None
    yield request.param, case, krb


def _config(case: Transport, krb: Any, folder: Path) -> tuple[WSManServer, Path]:
    server_kwargs, auth, tls = case.setup(krb, folder)
    provider = WSManServer(DATA, **server_kwargs)
    tls_keys = ", ".join(part for part in (f"ca_file: {provider.ca_file}" if provider.ca_file else "", tls) if part)
    config = folder / "config.yaml"
    config.write_text(
        f"defaults: {{interval: 30s, timeout: 10s, collectors: [{', '.join(COLLECTORS)}]}}\n"
        "targets:\n"
        f"  - name: abc\n    source: winrm\n    host: 127.0.0.1\n    port: {provider.port}\n"
        f"    scheme: {case.scheme}\n    auth: {auth}\n"
        + (f"    tls: {{{tls_keys}}}\n" if tls_keys else "")
    )
    return provider, config


def test_every_family_exact_over_each_transport_and_no_secret_anywhere(
    transport: tuple[str, Transport, Any], tmp_path: Path, run_exporter: StartExporter, promtool: str,
) -> None:
    name, case, krb = transport
    provider, config = _config(case, krb, tmp_path)
    with provider:
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
    for secret in case.secrets(krb, tmp_path):
        for where, content in (("log", log), ("/metrics", text), ("/probe", probe), ("/", landing)):
            assert secret not in content, f"{name}: a secret is in {where}"
    for where, content in (("log", log), ("/metrics", text), ("/", landing)):
        assert "Negotiate " not in content and "Authorization" not in content, f"{name}: a token in {where}"
    duration = got["sccm_poll_duration_seconds"][labels(target="abc")]
    print(f"\n{name}: first poll {duration:.3f} s (process start to ready {ready:.2f} s)")


def test_check_target_reports_each_transport_and_prints_no_secret(
    transport: tuple[str, Transport, Any], tmp_path: Path
) -> None:
    name, case, krb = transport
    provider, config = _config(case, krb, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | case.env(krb, tmp_path)
    with provider:
        result = subprocess.run([console_script(), "--config.file", str(config), "--check-target", "abc"],
                                capture_output=True, text=True, timeout=60, env=env)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "verdict: OK: abc: every enabled collector (7) read its class" in out
    auth = next(line for line in out.splitlines() if "  authenticate " in line)
    assert " ok " in auth
    if case.kerberos:
        assert "for HTTP/cm01.corp.example.com" in auth or "for WSMAN/cm01.corp.example.com" in auth
        assert "spn " in out and "principal" in out
    elif "certificate" in name:
        assert "client certificate CN=svc-cm-exporter" in auth
    else:
        assert f"as {USER}" in auth
    assert ("TLSv1" in out) == (case.scheme == "https")
    for secret in case.secrets(krb, tmp_path):
        assert secret not in out + result.stderr, f"{name}: a secret was printed"
