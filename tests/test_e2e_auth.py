"""End to end: the installed exporter signs in to loopback WS-Management servers over HTTPS the three
ways besides Basic -- NTLM with channel binding required (CbtHardeningLevel Strict), CredSSP (and
CredSSP sealing every message over http), a client certificate mapped to an account -- and serves
every family of the default collectors and dp_content_state exactly as the data set says.

Failing targets beside them (a wrong CredSSP password, a certificate of another CA, an expired
one, none where one is required, an unmapped one) are down with reason `auth` and a message that
says which; the healthy ones are untouched. No password and no line of any private key is in the
log, /metrics, /probe or the landing page.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import ExporterProcess, Samples, key_lines, labels, parse_samples, promtool_check_metrics
from datasets import three_site_dataset
from expected import DEFAULT_COLLECTORS, check_collector_up, check_collectors, check_target
from wsman_server import DEFAULT_USERS, CertMapping, WSManServer, cert_thumbprint, issue_client_cert, make_ca

USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
WRONG_PASSWORD = "N0t-The-Pa55word"
UPN = "svc-cm-exporter@corp.example.com"
COLLECTORS = ("package_status", *DEFAULT_COLLECTORS, "dp_content_state")
# target -> (server, site); the healthy targets, one per way in.
GOOD = {"ntlm_strict": "ABC", "credssp": "DEF", "credssp_http": "ABC", "certificate": "GHI"}
# target -> what its failure says (a regular expression of the "poll failed" line's err).
FAILING = {
    "credssp_wrong_password": r"rejected the credentials of CORP\\\\svc-cm-exporter \(CredSSP: STATUS_LOGON_FAILURE "
                              r"0xC000006D: wrong user name or password",
    "cert_other_ca": r"refused the client certificate CN=svc-cm-exporter \(\S+other-ca-client-cert.pem\): "
                     r"not issued by a CA the server trusts \(TLS alert unknown ca\)",
    "cert_expired": r"client certificate \S+expired-cert.pem \(CN=svc-cm-exporter\) expired on "
                    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: renew it",
    "cert_none": r"requires a TLS client certificate and none was sent \(TLS alert certificate required\)",
    "cert_unmapped": r"mapped the client certificate CN=stranger \(\S+stranger-cert.pem\) to no account \(HTTP 401",
}


@dataclass
class World:
    exporter: ExporterProcess
    servers: dict[str, WSManServer]
    dataset: dict[str, Any]
    samples: Samples
    text: str
    log: str
    secrets: list[str]  # passwords, and every base64 line of every private key
    key_file: str  # the certificate target's key, left readable by the group


def _config(tmp: Path, servers: dict[str, WSManServer], certs: dict[str, tuple[str, str]]) -> Path:
    secret, wrong = tmp / "cm_password", tmp / "wrong_password"
    secret.write_text(PASSWORD + "\n")
    wrong.write_text(WRONG_PASSWORD + "\n")
    lines = [
        "defaults:",
        "  interval: 3s",
        "  timeout: 2500ms",
        "  stale_after: 5m",
        f"  collectors: [{', '.join(COLLECTORS)}]",
        "targets:",
    ]
    for name, server in servers.items():
        site = GOOD.get(name, "ABC")
        lines += [
            f"  - name: {name}",
            "    source: winrm",
            "    host: 127.0.0.1",
            f"    port: {server.port}",
            f"    scheme: {'https' if server.tls else 'http'}",
            f"    site_code: {site}",
        ]
        if name in certs:
            cert, key = certs[name]
            lines += ["    auth: {transport: certificate}",
                      f"    tls: {{ca_file: {server.ca_file}, cert_file: {cert}, key_file: {key}}}"]
            continue
        transport = "credssp" if name.startswith("credssp") else "ntlm"
        password = wrong if name == "credssp_wrong_password" else secret
        lines.append(f"    auth: {{transport: {transport}, username: '{USER}', password_file: {password}}}")
        if server.tls:
            lines.append(f"    tls: {{ca_file: {server.ca_file}}}")
    path = tmp / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _settled(samples: Samples) -> bool:
    up = samples.get("sccm_up", {})
    errors = samples.get("sccm_poll_errors_total", {})
    return all(up.get(labels(target=t)) == 1 for t in GOOD) and all(
        errors.get(labels(target=t, reason="auth"), 0) >= 1 for t in FAILING)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("auth")
    pki = str(tmp)
    ca, other_ca = make_ca(pki), make_ca(pki, "Some Other CA", stem="other-ca")
    now = datetime.now(UTC)
    client = issue_client_cert(pki, ca, "svc-cm-exporter", upn=UPN, stem="client")
    key_file = str(tmp / "client-key-group-readable.pem")
    Path(key_file).write_bytes(Path(client[1]).read_bytes())
    os.chmod(key_file, 0o640)
    certs = {
        "certificate": (client[0], key_file),
        "cert_other_ca": issue_client_cert(pki, other_ca, "svc-cm-exporter", upn=UPN, stem="other-ca-client"),
        "cert_expired": issue_client_cert(pki, ca, "svc-cm-exporter", upn=UPN, stem="expired",
                                          not_before=now - timedelta(days=60), not_after=now - timedelta(days=2)),
        "cert_unmapped": issue_client_cert(pki, ca, "stranger", upn="stranger@corp.example.com"),
    }
    dataset = three_site_dataset()
    mapping = [CertMapping(UPN, cert_thumbprint(ca[0]), USER)]

    def cert_server() -> WSManServer:
        return WSManServer(dataset, tls=True, auth=("certificate",), client_ca=ca[0], cert_mappings=mapping)

    servers = {
        "ntlm_strict": WSManServer(dataset, tls=True, auth=("ntlm",), cbt="strict"),
        "credssp": WSManServer(dataset, tls=True, auth=("credssp",)),
        "credssp_http": WSManServer(dataset, auth=("credssp",), allow_unencrypted=False),
        "certificate": cert_server(),
        "credssp_wrong_password": WSManServer(dataset, tls=True, auth=("credssp",)),
        "cert_other_ca": cert_server(),
        "cert_expired": cert_server(),
        "cert_none": cert_server(),  # polled with NTLM: no certificate at all
        "cert_unmapped": cert_server(),
    }
    for server in servers.values():
        server.start()
    exporter = ExporterProcess(_config(tmp, servers, certs), tmp / "exporter.log")
    try:
        exporter.wait_ready()
        exporter.wait_for("every healthy target up and every failing one counted", _settled, timeout=60)
        text = exporter.scrape()
        secrets = [PASSWORD, WRONG_PASSWORD, *key_lines(client[1], ca[1], other_ca[1],
                                                          *(certs[n][1] for n in certs if n != "certificate"))]
        yield World(exporter, servers, dataset, parse_samples(text), text, exporter.log(), secrets, key_file)
    finally:
        exporter.stop()
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize("name", list(GOOD))
def test_each_way_in_serves_every_family_exact(world: World, name: str) -> None:
    site = GOOD[name]
    classes = world.dataset[f"root\\SMS\\site_{site}"]
    got = world.samples
    assert got["sccm_up"][labels(target=name)] == 1
    check_collector_up(got, name, dict.fromkeys(COLLECTORS, 1))
    check_target(got, name, site, classes["SMS_PackageStatus"])
    check_collectors(got, name, site, classes, collectors=(*DEFAULT_COLLECTORS, "dp_content_state"))
    errors = {dict(k)["reason"]: v for k, v in got["sccm_poll_errors_total"].items() if dict(k)["target"] == name}
    assert sum(errors.values()) == 0, errors


def test_the_exposition_is_valid(world: World, promtool: str) -> None:
    promtool_check_metrics(promtool, world.text)


def test_each_server_was_signed_in_to_its_own_way(world: World) -> None:
    ntlm, credssp, sealed, cert = (world.servers[n] for n in ("ntlm_strict", "credssp", "credssp_http", "certificate"))
    # Strict: every NTLM handshake carried the binding (pywinrm's default send_cbt=True).
    assert ntlm.ntlm_handshakes >= 1 and ntlm.auth_failures == 0
    assert credssp.credssp_handshakes >= 1 and not any(r.encrypted for r in credssp.requests)
    assert sealed.credssp_handshakes >= 1 and all(r.encrypted for r in sealed.requests)
    assert cert.certificate_logons >= 1 and {r.user for r in cert.requests} == {USER}
    assert all(r.user == USER for s in (ntlm, credssp, sealed) for r in s.requests)


@pytest.mark.parametrize("name", list(FAILING))
def test_each_failure_is_auth_and_says_which(world: World, name: str) -> None:
    assert world.samples["sccm_up"][labels(target=name)] == 0
    errors = {dict(k)["reason"]: v for k, v in world.samples["sccm_poll_errors_total"].items()
              if dict(k)["target"] == name}
    assert errors["auth"] >= 1 and sum(errors.values()) == errors["auth"], errors
    failed = [line for line in world.log.splitlines() if 'msg="poll failed"' in line and f"target={name} " in line]
    assert failed and all("reason=auth" in line for line in failed)
    assert re.search(FAILING[name], failed[0]), failed[0]


def test_the_landing_page_says_what_failed(world: World) -> None:
    landing = world.exporter.get("/").text
    assert "not issued by a CA the server trusts" in landing
    assert "STATUS_LOGON_FAILURE" in landing and "requires a TLS client certificate" in landing


def test_the_readable_key_file_is_warned_about_once(world: World) -> None:
    warned = [line for line in world.log.splitlines() if "key file can be read by others" in line]
    assert len(warned) == 1, warned
    assert "target=certificate" in warned[0] and f"file={world.key_file}" in warned[0]
    assert "mode=0640" in warned[0] and f'hint="chmod 600 {world.key_file}"' in warned[0]


def test_no_password_and_no_key_material_anywhere(world: World) -> None:
    exporter = world.exporter
    served = [world.log, exporter.log(), exporter.scrape(), exporter.get("/").text]
    served += [exporter.scrape(f"/probe?target={name}") for name in (*GOOD, *FAILING)]
    for text in served:
        leaked = [secret for secret in world.secrets if secret in text]
        assert leaked == [] and "PRIVATE KEY" not in text
