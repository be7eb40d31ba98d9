"""End to end: the installed exporter polls the loopback WS-Management server through real pywinrm.

Expected values are computed here from the data set itself (tests/datasets.py), independently of
the exporter's own parsing, and compared with what a scrape over HTTP returns.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

from conftest import Samples, StartExporter, free_port, labels, parse_samples, promtool_check_metrics
from datasets import DP_CONTENT_SUMMARIZER, PACKAGE_STATUS
from expected import check_collectors, check_target
from wsman_server import DEFAULT_USERS, WSManServer

USER, PASSWORD = next(iter(DEFAULT_USERS.items()))


def winrm_config(tmp_path: Path, port: int, targets: str, *, interval: str = "3s", timeout: str = "2s",
                 transport: str = "ntlm", scheme: str = "http", extra_auth: str = "", tls: str = "",
                 defaults: str = "") -> Path:
    """`defaults`: more keys of the defaults block (`collectors: [...], parallel_enumerations: 4`)."""
    secret = tmp_path / "cm_password"
    secret.write_text(PASSWORD + "\n")
    more = f", {defaults}" if defaults else ""
    lines = [f"defaults: {{interval: {interval}, timeout: {timeout}, stale_after: 1m{more}}}", "targets:"]
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


OPTIONAL = ("package_info", "dp_info", "dp_content_state", "dp_status", "dp_drive", "dp_groups")
REFUSED = 'msg="sliced enumerations refused; reading the class in one enumeration until the configuration changes"'
SLICED = (PACKAGE_STATUS, DP_CONTENT_SUMMARIZER)  # the classes read in PackageID slices


def enumerates(provider: WSManServer, class_name: str, site: str, *, sliced: bool) -> int:
    """The Enumerates of `class_name` in site `site`'s namespace, with the slices' LIKE or without."""
    return sum(
        1 for r in provider.requests_of(class_name, "enumerate")
        if f"/site_{site}/" in (r.resource_uri or "") and (" LIKE " in (r.wql or "")) == sliced
    )


def refusals(log: str, target: str) -> list[str]:
    return [line for line in log.splitlines() if REFUSED in line and f" target={target} " in line]


def test_a_provider_refusing_the_slices_is_read_in_one_enumeration_exactly_until_a_reload_changes_the_target(
    tmp_path: Path, provider: WSManServer, dataset: dict[str, Any], run_exporter: StartExporter,
) -> None:
    # Both shapes of the refusal: CannotProcessFilter nesting 0x80041017, and a plain MSFT_WmiError.
    provider.refuse_like = {PACKAGE_STATUS: "cannot_process_filter", DP_CONTENT_SUMMARIZER: "invalid_query"}
    config = winrm_config(tmp_path, provider.port, "abc:ABC def:DEF", interval="2s", timeout="2s",
                          defaults=f"parallel_enumerations: 4, collectors: [{', '.join(OPTIONAL)}]")
    exporter = run_exporter(config)
    exporter.wait_ready()

    def polls_after_the_refusal(s: Samples) -> bool:  # two more polls went straight to one enumeration
        return all(enumerates(provider, c, site, sliced=False) >= 3 for c in SLICED for site in ("ABC", "DEF"))

    got = exporter.wait_for("three polls of each target", polls_after_the_refusal)
    for target, site in (("abc", "ABC"), ("def", "DEF")):
        classes = dataset[f"root\\SMS\\site_{site}"]
        check_target(got, target, site, classes[PACKAGE_STATUS])
        check_collectors(got, target, site, classes, OPTIONAL)
        assert got["sccm_up"][labels(target=target)] == 1
        assert {dict(k)["collector"]: v for k, v in got["sccm_collector_up"].items()
                if dict(k)["target"] == target} == dict.fromkeys(("package_status", *OPTIONAL), 1.0)
        for class_name in SLICED:  # the slices were tried in the first poll only
            assert enumerates(provider, class_name, site, sliced=True) == 4, (target, class_name)
    assert sum(got["sccm_poll_errors_total"].values()) == 0
    assert sum(got["sccm_collector_errors_total"].values()) == 0
    log = exporter.log()
    for target in ("abc", "def"):  # once per class, over every poll
        lines = refusals(log, target)
        assert sorted(re.findall(r" class=(\S+) ", " ".join(lines))) == sorted(SLICED), lines
        assert all(" slices=4 " in line and "0x80041017" in line and "reason=wmi_fault" in line for line in lines)
    assert PASSWORD not in log

    # A reload that changes target abc builds it anew: its slices are tried again (and refused
    # again, once); def, unchanged, keeps what it learnt.
    config.write_text(config.read_text().replace("  - name: abc\n", "  - name: abc\n    timeout: 1900ms\n"))
    exporter.proc.send_signal(signal.SIGHUP)
    exporter.wait_for("abc's slices tried again", lambda s: all(
        enumerates(provider, c, "ABC", sliced=True) == 8 for c in SLICED))
    got = exporter.wait_for("a poll of abc in one enumeration again", lambda s: all(
        enumerates(provider, c, "ABC", sliced=False) >= 5 for c in SLICED))
    check_target(got, "abc", "ABC", dataset["root\\SMS\\site_ABC"][PACKAGE_STATUS])
    check_collectors(got, "abc", "ABC", dataset["root\\SMS\\site_ABC"], OPTIONAL)
    assert got["sccm_up"] == {labels(target="abc"): 1.0, labels(target="def"): 1.0}
    log = exporter.log()
    assert "configuration reloaded" in log and "kept=1 started=1 stopped=1" in log
    assert len(refusals(log, "abc")) == 4 and len(refusals(log, "def")) == 2
    assert all(enumerates(provider, c, "DEF", sliced=True) == 4 for c in SLICED)
