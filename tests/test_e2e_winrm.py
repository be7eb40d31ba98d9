"""End to end: the installed exporter polls the loopback WS-Management server through real pywinrm.

Expected values are computed here from the data set itself (tests/datasets.py), independently of
the exporter's own parsing, and compared with what a scrape over HTTP returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import Samples, StartExporter, free_port, labels, parse_samples, promtool_check_metrics
from expected import check_target
from wsman_server import DEFAULT_USERS, WSManServer

USER, PASSWORD = next(iter(DEFAULT_USERS.items()))


def winrm_config(tmp_path: Path, port: int, targets: str, *, interval: str = "3s", timeout: str = "2s",
                 transport: str = "ntlm", scheme: str = "http", extra_auth: str = "", tls: str = "") -> Path:
    secret = tmp_path / "cm_password"
    secret.write_text(PASSWORD + "\n")
    lines = [f"defaults: {{interval: {interval}, timeout: {timeout}, stale_after: 1m}}", "targets:"]
    for name, site in (t.split(":") for t in targets.split()):
        lines += [
            f"  - name: {name}",
            "    source: winrm",
            "    host: 127.0.0.1",
            f"    port: {port}",
            f"    scheme: {scheme}",
            *([f"    site_code: {site}"] if site else []),
            "    auth:",
            f"      transport: {transport}",
            f"      username: '{USER}'",
            f"      password_file: {secret}",
            *([f"      {extra_auth}"] if extra_auth else []),
            *([f"    tls: {tls}"] if tls else []),
        ]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_three_sites_over_ntlm_with_message_encryption_every_family_exact(
    tmp_path: Path, provider: WSManServer, dataset: dict[str, Any], run_exporter: StartExporter,
    promtool: str,
) -> None:
    # abc leaves site_code out: it is discovered from SMS_ProviderLocation (ABC is the local site).
    exporter = run_exporter(winrm_config(tmp_path, provider.port, "abc: def:DEF ghi:GHI"))
    exporter.wait_ready()
    text = exporter.scrape()
    promtool_check_metrics(promtool, text)
    got = parse_samples(text)
    assert all(r.encrypted for r in provider.requests)
    assert got["sccm_up"] == {labels(target=t): 1.0 for t in ("abc", "def", "ghi")}
    for target, site in (("abc", "ABC"), ("def", "DEF"), ("ghi", "GHI")):
        rows = dataset[f"root\\SMS\\site_{site}"]["SMS_PackageStatus"]
        check_target(got, target, site, rows)
    assert PASSWORD not in exporter.log()


def test_https_with_basic_auth_and_the_providers_ca_file(
    tmp_path: Path, dataset: dict[str, Any], run_exporter: StartExporter
) -> None:
    with WSManServer(dataset, tls=True, auth=("basic",)) as provider:
        config = winrm_config(tmp_path, provider.port, "abc:ABC", transport="basic", scheme="https",
                              tls=f"{{ca_file: {provider.ca_file}}}")
        exporter = run_exporter(config)
        exporter.wait_ready()
        got = exporter.samples()
    rows = dataset["root\\SMS\\site_ABC"]["SMS_PackageStatus"]
    assert got["sccm_up"] == {labels(target="abc"): 1.0}
    assert len(got["sccm_package_status"]) == len(rows)


def errors_of(samples: Samples, target: str) -> dict[str, float]:
    return {dict(k)["reason"]: v for k, v in samples["sccm_poll_errors_total"].items() if dict(k)["target"] == target}


def test_failures_are_counted_by_reason_and_the_exporter_keeps_serving(
    tmp_path: Path, provider: WSManServer, run_exporter: StartExporter
) -> None:
    # One healthy target beside a provider that is down, a wrong site code, and bad credentials.
    down_port = free_port()
    config = winrm_config(tmp_path, provider.port, "good:ABC wrongsite:XYZ")
    text = config.read_text()
    text += text.split("targets:\n")[1].replace("name: good", "name: down").replace(
        f"port: {provider.port}", f"port: {down_port}").split("  - name: wrongsite")[0]
    config.write_text(text)
    bad_secret = tmp_path / "bad_password"
    bad_secret.write_text("not-the-password\n")
    config.write_text(config.read_text() + f"""  - name: badcreds
    source: winrm
    host: 127.0.0.1
    port: {provider.port}
    scheme: http
    site_code: ABC
    auth: {{transport: ntlm, username: '{USER}', password_file: {bad_secret}}}
""")
    exporter = run_exporter(config)
    exporter.wait_ready()
    got = exporter.wait_for("every failing target counted", lambda s: all(
        sum(errors_of(s, t).values()) >= 1 for t in ("down", "wrongsite", "badcreds")))
    assert got["sccm_up"][labels(target="good")] == 1
    for target, reason in (("down", "connection"), ("wrongsite", "wmi_fault"), ("badcreds", "auth")):
        assert got["sccm_up"][labels(target=target)] == 0
        errors = errors_of(got, target)
        assert errors[reason] >= 1 and sum(errors.values()) == errors[reason], (target, errors)
    assert exporter.get("/-/healthy").status == 200
    log = exporter.log()
    assert 'reason=wmi_fault' in log and 'target=wrongsite' in log
    assert PASSWORD not in log and "not-the-password" not in log


def test_a_provider_that_hangs_times_out_and_the_last_good_rows_stay(
    tmp_path: Path, provider: WSManServer, run_exporter: StartExporter
) -> None:
    exporter = run_exporter(winrm_config(tmp_path, provider.port, "abc:ABC", interval="2s", timeout="1s"))
    exporter.wait_ready()
    before = exporter.samples()
    assert before["sccm_up"] == {labels(target="abc"): 1.0}
    provider.hang = {"pull"}
    got = exporter.wait_for("a timeout", lambda s: errors_of(s, "abc")["timeout"] >= 1)
    assert got["sccm_up"] == {labels(target="abc"): 0.0}
    assert got["sccm_package_status"] == before["sccm_package_status"]  # kept until stale_after
    assert got["sccm_poll_duration_seconds"][labels(target="abc")] < 3
    provider.hang = set()
    exporter.wait_for("recovery", lambda s: s["sccm_up"][labels(target="abc")] == 1)


def test_a_wmi_fault_mid_walk_keeps_the_last_good_rows(
    tmp_path: Path, provider: WSManServer, run_exporter: StartExporter
) -> None:
    exporter = run_exporter(winrm_config(tmp_path, provider.port, "abc:ABC", interval="2s", timeout="1s"))
    exporter.wait_ready()
    before = exporter.samples()
    provider.fault_next("pull", "provider_failure", class_name="SMS_PackageStatus")
    got = exporter.wait_for("a wmi fault", lambda s: errors_of(s, "abc")["wmi_fault"] >= 1)
    assert got["sccm_package_status_rows"] == before["sccm_package_status_rows"]
