"""Kerberos, proven against a real MIT KDC (tests/kerberos_realm.py) and the WS-Management test
server accepting Kerberos with pyspnego/GSSAPI keyed by its own keytab, like a provider's
computer account. Every poll goes through real pywinrm (`WinRMSource`), or the real exporter.

What a domain estate relies on: tickets from a password, from a keytab (renewed by the exporter
itself), or from the environment's cache; a private cache per target; the SPN's service class
and host; message encryption over http and channel binding over https; and, when it fails, a
message that names the client principal and the SPN and says what to do, never the password.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import Kerberos, StartExporter, collector_rows, labels
from datasets import single_site_dataset
from wsman_server import WSManServer

from exporter.config import AuthConfig, TargetConfig, TLSConfig
from exporter.errors import PollError
from exporter.winrm.source import WinRMSource

DATA = single_site_dataset("ABC", packages=25, servers=4, seed=11)
ROWS = len(DATA["root\\SMS\\site_ABC"]["SMS_PackageStatus"])


@pytest.fixture
def krb_env(kerberos: Kerberos, monkeypatch: pytest.MonkeyPatch) -> Kerberos:
    """This process sees only the test realm's krb5.conf and no ticket cache of the host's."""
    for name, value in kerberos.env.items():
        monkeypatch.setenv(name, value)
    return kerberos


@pytest.fixture
def provider(krb_env: Kerberos) -> Iterator[WSManServer]:
    with WSManServer(DATA, auth=("kerberos",), kerberos_keytab=krb_env.service_keytab) as server:
        yield server


@pytest.fixture
def tls_provider(krb_env: Kerberos) -> Iterator[WSManServer]:
    with WSManServer(DATA, auth=("kerberos",), kerberos_keytab=krb_env.service_keytab, tls=True) as server:
        yield server


def target(server: WSManServer, *, host: str = "127.0.0.1", parallel: int = 1, **auth: Any) -> TargetConfig:
    settings: dict[str, Any] = {"kerberos_hostname_override": "cm01.corp.example.com", **auth}
    return TargetConfig(
        name="abc", source="winrm", interval=300, timeout=20, per_row="all", stale_after=900,
        host=host, port=server.port, scheme="https" if server.tls else "http", site_code="ABC",
        auth=AuthConfig(transport="kerberos", **settings),
        tls=TLSConfig(verify=True, ca_file=server.ca_file), parallel_enumerations=parallel,
    )


def poll(config: TargetConfig) -> int:
    """One read of SMS_PackageStatus; the number of rows."""
    source = WinRMSource(config)
    try:
        return len(list(collector_rows(source, "package_status", time.monotonic() + 20)))
    finally:
        source.close()


def failure(config: TargetConfig) -> PollError:
    with pytest.raises(PollError) as caught:
        poll(config)
    return caught.value


# --- the ways to get a ticket ---------------------------------------------------------------------


def test_a_password_gets_the_ticket_and_every_message_is_sealed_over_http(
    krb_env: Kerberos, provider: WSManServer
) -> None:
    assert poll(target(provider, username=krb_env.user, password=krb_env.password, parallel=4)) == ROWS
    assert provider.requests and all(r.encrypted for r in provider.requests)
    assert {r.user for r in provider.requests} == {krb_env.user}
    assert provider.kerberos_handshakes == 4  # one security context per enumeration's connection
    # The ticket went to the target's private cache: the environment's (KRB5CCNAME) is untouched.
    assert not os.path.exists(krb_env.env["KRB5CCNAME"].removeprefix("FILE:"))


def test_a_client_keytab_alone_names_the_principal_and_over_https_binds_the_channel(
    krb_env: Kerberos, tls_provider: WSManServer
) -> None:
    config = target(tls_provider, keytab_file=krb_env.client_keytab)
    assert WinRMSource(config)._transport._kerberos.principal == krb_env.user  # type: ignore[union-attr]
    assert poll(config) == ROWS
    assert tls_provider.requests and not any(r.encrypted for r in tls_provider.requests)  # TLS protects them
    assert {r.user for r in tls_provider.requests} == {krb_env.user}


def test_without_password_or_keytab_the_ticket_cache_of_the_environment_is_used(
    krb_env: Kerberos, provider: WSManServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ccache = f"FILE:{tmp_path / 'krb5cc'}"
    krb_env.realm.kinit("svc-exporter", krb_env.password, ccache)
    monkeypatch.setenv("KRB5CCNAME", ccache)
    assert poll(target(provider)) == ROWS
    assert {r.user for r in provider.requests} == {krb_env.user}


def test_krb5_config_is_honoured(krb_env: Kerberos, provider: WSManServer, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The same realm described by a krb5.conf whose KDC is a closed port: the exporter uses it.
    config = tmp_path / "krb5.conf"
    config.write_text(Path(krb_env.env["KRB5_CONFIG"]).read_text().replace(
        f"127.0.0.1:{krb_env.realm.port}", "127.0.0.1:9"))
    monkeypatch.setenv("KRB5_CONFIG", str(config))
    error = failure(target(provider, username=krb_env.user, password=krb_env.password))
    assert error.reason == "connection"
    assert "cannot reach a KDC" in str(error)


# --- the SPN --------------------------------------------------------------------------------------


def test_the_service_class_wsman_is_asked_for_when_configured(krb_env: Kerberos, provider: WSManServer) -> None:
    config = target(provider, username=krb_env.user, password=krb_env.password, kerberos_service="WSMAN")
    assert config.spn == "WSMAN/cm01.corp.example.com"
    assert poll(config) == ROWS


def test_an_ip_address_without_hostname_override_names_the_spn_and_how_to_fix_it(
    krb_env: Kerberos, provider: WSManServer
) -> None:
    config = target(provider, username=krb_env.user, password=krb_env.password, kerberos_hostname_override=None)
    error = failure(config)
    assert error.reason == "auth"
    text = str(error)
    assert "SPN HTTP/127.0.0.1" in text and "server not found" in text
    assert "SPNs name hosts, not addresses" in text and "kerberos_hostname_override" in text
    assert f"client {krb_env.user}" in text


def test_an_alias_without_an_spn_says_which_setspn_registers_it(krb_env: Kerberos, provider: WSManServer) -> None:
    config = target(provider, username=krb_env.user, password=krb_env.password,
                    kerberos_hostname_override="sccm.corp.example.com")
    error = failure(config)
    assert error.reason == "auth"
    assert "setspn -S HTTP/sccm.corp.example.com SCCM" in str(error)


def test_a_host_name_the_spn_is_registered_for_needs_no_override(krb_env: Kerberos) -> None:
    krb_env.realm.add_service("HTTP/localhost", str(krb_env.realm.dir / "localhost.keytab"))
    with WSManServer(DATA, auth=("kerberos",), kerberos_keytab=str(krb_env.realm.dir / "localhost.keytab")) as srv:
        config = target(srv, host="localhost", username=krb_env.user, password=krb_env.password,
                        kerberos_hostname_override=None)
        assert config.spn == "HTTP/localhost"
        assert poll(config) == ROWS


def test_an_spn_of_another_account_is_refused_by_the_provider(krb_env: Kerberos, provider: WSManServer) -> None:
    # A ticket for a service the provider holds no key for: what a duplicate or misplaced SPN gives.
    krb_env.realm.add_service("HTTP/cm02.corp.example.com", str(krb_env.realm.dir / "cm02.keytab"))
    config = target(provider, username=krb_env.user, password=krb_env.password,
                    kerberos_hostname_override="cm02.corp.example.com")
    error = failure(config)
    assert error.reason == "auth"
    assert "refused the Kerberos ticket (HTTP 401)" in str(error)
    assert "SPN HTTP/cm02.corp.example.com" in str(error)


# --- failures: the principal, the SPN, what to do, never the password ------------------------------


def test_an_unknown_principal(krb_env: Kerberos, provider: WSManServer) -> None:
    error = failure(target(provider, username="nobody@CORP.EXAMPLE.COM", password="whatever1"))
    assert error.reason == "auth"
    assert "does not know the client principal" in str(error)
    assert "client nobody@CORP.EXAMPLE.COM" in str(error) and "SPN HTTP/cm01.corp.example.com" in str(error)


def test_a_wrong_password_is_auth_and_never_shown(krb_env: Kerberos, provider: WSManServer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    wrong = "Wr0ngPassw0rdXyz"
    caplog.set_level(logging.DEBUG)
    error = failure(target(provider, username=krb_env.user, password=wrong))
    assert error.reason == "auth"
    assert "refused the password" in str(error) and f"client {krb_env.user}" in str(error)
    assert wrong not in str(error) and wrong not in caplog.text
    assert krb_env.password not in caplog.text


def test_a_keytab_made_before_the_password_changed_says_export_it_again(
    krb_env: Kerberos, provider: WSManServer
) -> None:
    realm = krb_env.realm
    realm.add_user("rotated", "FirstPassw0rd")
    keytab = realm.client_keytab("rotated")
    realm.change_password("rotated", "SecondPassw0rd")  # the account's key version moves on
    error = failure(target(provider, keytab_file=keytab))
    assert error.reason == "auth"
    assert "keytab" in str(error) and "ktpass" in str(error)
    assert "client rotated@CORP.EXAMPLE.COM" in str(error)


def test_clock_skew_with_the_kdc(krb_env: Kerberos, provider: WSManServer, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The KDC runs an hour ahead (libfaketime). A principal that needs pre-authentication sends its
    # timestamp, which the KDC finds too far off; kdc_timesync = 0 (a hardened krb5.conf) keeps
    # the client from adopting the KDC's time and retrying.
    realm = krb_env.realm
    realm.add_user("skewed", "SkewPassw0rd", requires_preauth=True)
    config = tmp_path / "krb5.conf"
    config.write_text(Path(krb_env.env["KRB5_CONFIG"]).read_text().replace(
        "[libdefaults]\n", "[libdefaults]\n\tkdc_timesync = 0\n", 1))
    monkeypatch.setenv("KRB5_CONFIG", str(config))
    with realm.kdc_clock("+1h"):
        error = failure(target(provider, username="skewed@CORP.EXAMPLE.COM", password="SkewPassw0rd"))
    assert error.reason == "auth"
    assert "clocks" in str(error) and "NTP" in str(error)
    assert "client skewed@CORP.EXAMPLE.COM" in str(error) and "SPN HTTP/cm01.corp.example.com" in str(error)


def test_a_provider_whose_clock_is_off_refuses_the_ticket_and_the_message_says_so(
    krb_env: Kerberos, provider: WSManServer
) -> None:
    # The client takes the KDC's time (kdc_timesync, MIT's default); the provider, an hour behind
    # the KDC, refuses the ticket as Windows does: HTTP 401.
    with krb_env.realm.kdc_clock("+1h"):
        error = failure(target(provider, username=krb_env.user, password=krb_env.password))
    assert error.reason == "auth"
    assert "refused the Kerberos ticket (HTTP 401)" in str(error) and "clocks" in str(error)


def test_an_expired_ticket_in_the_environments_cache_cannot_be_renewed(
    krb_env: Kerberos, provider: WSManServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ccache = f"FILE:{tmp_path / 'krb5cc'}"
    krb_env.realm.kinit("svc-exporter", krb_env.password, ccache, lifetime="3s")
    monkeypatch.setenv("KRB5CCNAME", ccache)
    time.sleep(4)
    error = failure(target(provider))
    assert error.reason == "auth"
    assert "expired" in str(error) and "kinit" in str(error) and "keytab_file" in str(error)


def test_an_empty_environment_cache_says_run_kinit(krb_env: Kerberos, provider: WSManServer) -> None:
    error = failure(target(provider))
    assert error.reason == "auth"
    assert "kinit" in str(error) and "SPN HTTP/cm01.corp.example.com" in str(error)


def test_a_kdc_that_cannot_be_reached_is_a_connection_failure(
    krb_env: Kerberos, provider: WSManServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "krb5.conf"
    config.write_text(Path(krb_env.env["KRB5_CONFIG"]).read_text().replace(
        f"127.0.0.1:{krb_env.realm.port}", "127.0.0.1:9"))
    monkeypatch.setenv("KRB5_CONFIG", str(config))
    error = failure(target(provider, keytab_file=krb_env.client_keytab))
    assert error.reason == "connection"
    assert "KDC" in str(error) and f"client {krb_env.user}" in str(error)


def test_a_provider_without_kerberos_says_so(krb_env: Kerberos) -> None:
    with WSManServer(DATA, auth=("basic",)) as basic_only:
        error = failure(target(basic_only, username=krb_env.user, password=krb_env.password))
    assert error.reason == "auth"
    assert "does not offer Kerberos" in str(error)


# --- renewal: a daemon has nobody to run kinit ------------------------------------------------------


def test_each_target_keeps_its_own_cache(krb_env: Kerberos, provider: WSManServer) -> None:
    realm = krb_env.realm
    realm.add_user("second", "SecondUserPassw0rd")
    first = WinRMSource(target(provider, username=krb_env.user, password=krb_env.password))
    second = WinRMSource(target(provider, username="second@CORP.EXAMPLE.COM", password="SecondUserPassw0rd"))
    try:
        for source in (first, second, first):
            assert len(list(collector_rows(source, "package_status", time.monotonic() + 20))) == ROWS
    finally:
        first.close()
        second.close()
    users = [r.user for r in provider.requests]
    assert set(users) == {krb_env.user, "second@CORP.EXAMPLE.COM"}
    assert users[-1] == krb_env.user  # the first target still signs in as itself after the second


def test_keytab_tickets_are_renewed_by_the_exporter_across_several_expiries(
    krb_env: Kerberos, tmp_path: Path, run_exporter: StartExporter
) -> None:
    realm = krb_env.realm
    realm.add_user("shortlived", "ShortPassw0rd", max_life="1 minute")
    keytab = realm.client_keytab("shortlived")
    with WSManServer(DATA, auth=("kerberos",), kerberos_keytab=krb_env.service_keytab) as srv:
        config = tmp_path / "config.yaml"
        config.write_text(
            "defaults: {interval: 5s, timeout: 4s, stale_after: 10s, collectors: [package_status]}\n"
            "targets:\n"
            f"  - {{name: abc, source: winrm, host: 127.0.0.1, port: {srv.port}, scheme: http, site_code: ABC,\n"
            f"     auth: {{transport: kerberos, keytab_file: {keytab},\n"
            "             kerberos_hostname_override: cm01.corp.example.com}}\n"
        )
        exporter = run_exporter(config, env=krb_env.env)
        exporter.wait_ready()
        started = time.monotonic()
        down = []
        while time.monotonic() - started < 135:  # a minute's tickets: more than two expiries
            got = exporter.samples()
            if got["sccm_up"] != {labels(target="abc"): 1.0}:
                down.append(round(time.monotonic() - started))
            time.sleep(2.5)
        got = exporter.samples()
        log = exporter.log()
    assert down == [], f"sccm_up was 0 at {down} s: {log[-2000:]}"
    assert sum(got["sccm_poll_errors_total"].values()) == 0
    obtained = re.findall(r"Kerberos ticket obtained.*", log)
    assert len(obtained) >= 4, log  # the first ticket and three renewals (each at 2/3 of its minute)
    assert all("principal=shortlived@CORP.EXAMPLE.COM" in line for line in obtained)
    polls = len([r for r in srv.requests if r.action == "enumerate"])
    assert polls >= 20
    assert srv.kerberos_handshakes >= 4  # new sessions after each renewal, not one per poll
    assert srv.kerberos_handshakes < polls


def test_password_tickets_are_renewed_before_they_run_out(krb_env: Kerberos, provider: WSManServer,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    # The same rule for a password: no poll runs on a ticket with less than a third of its life.
    realm = krb_env.realm
    realm.add_user("pwshort", "PwShortPassw0rd", max_life="1 minute")
    config = replace(target(provider, username="pwshort@CORP.EXAMPLE.COM", password="PwShortPassw0rd"))
    source = WinRMSource(config)
    caplog.set_level(logging.INFO, logger="exporter.winrm")
    try:
        assert len(list(collector_rows(source, "package_status", time.monotonic() + 20))) == ROWS
        login = source._transport._kerberos
        assert login is not None
        login._renew_at = time.time()  # as if 40 s had passed
        assert len(list(collector_rows(source, "package_status", time.monotonic() + 20))) == ROWS
    finally:
        source.close()
    assert len([r for r in caplog.records if r.getMessage() == "Kerberos ticket obtained"]) == 2
    assert provider.kerberos_handshakes == 2  # the session of the old ticket was replaced
