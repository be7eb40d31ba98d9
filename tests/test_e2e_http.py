"""End to end through the installed console script and HTTP: endpoints, demo and file sources."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import pytest
from conftest import (
    Server,
    StartExporter,
    console_script,
    free_port,
    gunzip,
    http_get,
    labels,
    parse_samples,
    promtool_check_metrics,
    require_tool,
)
from datasets import Row, three_site_dataset
from expected import check_target
from prometheus_client.parser import text_string_to_metric_families
from wsman_server import make_self_signed_cert

FAMILIES = {
    "sccm_package_status",
    "sccm_package_status_update_timestamp_seconds",
    "sccm_package_status_rows",
    "sccm_server_package_status_rows",
    "sccm_package_status_servers",
    "sccm_up",
    "sccm_poll_duration_seconds",
    "sccm_last_poll_success_timestamp_seconds",
    "sccm_exporter_config_last_reload_successful",
    "sccm_exporter_config_last_reload_success_timestamp_seconds",
    "sccm_poll_errors_total",
    "sccm_target_interval_seconds",
    "sccm_target_stale_after_seconds",
    "sccm_exporter_build_info",
    "sccm_collector_up",
    "sccm_collector_duration_seconds",
    "sccm_collector_errors_total",
}
# The exporter's own HTTP metrics and what prometheus_client's process and Python collectors give
# (those may add families in a later version: the process_ and python_ ones are checked by name).
HTTP_FAMILIES = {"sccm_exporter_http_requests_total", "sccm_exporter_http_requests_in_flight"}
RUNTIME_FAMILIES = {
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_cpu_seconds_total",
    "process_start_time_seconds",
    "python_info",
    "python_gc_objects_collected_total",
}
RUNTIME_PREFIXES = ("process_", "python_")
OPTIONAL_FAMILIES = {
    "sccm_package_info",
    "sccm_package_source_version",
    "sccm_package_size_bytes",
    "sccm_package_source_timestamp_seconds",
    "sccm_dp_content_state",
    "sccm_dp_content_state_packages",
    "sccm_dp_content_last_copied_timestamp_seconds",
    "sccm_distribution_point_info",
    "sccm_distribution_point_status",
    "sccm_distribution_point_status_packages",
    "sccm_distribution_point_last_status_timestamp_seconds",
    "sccm_distribution_point_monitored",
    "sccm_distribution_point_drive_free_bytes",
    "sccm_distribution_point_drive_size_bytes",
    "sccm_dp_group_info",
    "sccm_dp_group_members",
    "sccm_dp_group_packages",
    "sccm_dp_group_out_of_sync_packages",
    "sccm_dp_group_member",
    "sccm_distribution_point_groups",
}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def demo_config(tmp_path: Path, packages: int = 30, servers: int = 8) -> Path:
    return write(
        tmp_path / "demo.yaml",
        f"""
defaults: {{interval: 2s, timeout: 1s, stale_after: 1m}}
targets:
  - {{name: demo, source: demo, packages: {packages}, servers: {servers}, seed: 7,
     collectors: [package_status, package_info, dp_info, dp_content_state]}}
  - {{name: other, source: demo, packages: 5, servers: 2, seed: 8}}
""",
    )


def test_demo_site_serves_every_family_complete_and_promtool_accepts_it(
    tmp_path: Path, run_exporter: StartExporter, promtool: str
) -> None:
    exporter = run_exporter(demo_config(tmp_path))
    exporter.wait_ready()
    text = exporter.scrape()
    promtool_check_metrics(promtool, text)
    got = parse_samples(text)
    assert {name for name in got if not name.startswith(RUNTIME_PREFIXES)} == \
        FAMILIES | OPTIONAL_FAMILIES | HTTP_FAMILIES
    assert set(got) >= RUNTIME_FAMILIES
    demo = {k: v for k, v in got["sccm_package_status"].items() if dict(k)["target"] == "demo"}
    # Every row is one series, and the complete counts add up to exactly the rows served.
    rows_total = sum(v for k, v in got["sccm_package_status_rows"].items() if dict(k)["target"] == "demo")
    assert rows_total == len(demo) > 0
    copy_rows = sum(1 for k in demo if dict(k)["type"] == "copy")
    server_total = sum(v for k, v in got["sccm_server_package_status_rows"].items() if dict(k)["target"] == "demo")
    assert server_total == copy_rows
    assert got["sccm_up"] == {labels(target="demo"): 1.0, labels(target="other"): 1.0}
    assert {dict(k)["server"] for k in got["sccm_server_package_status_rows"] if dict(k)["target"] == "demo"} \
        and len({dict(k)["package_id"] for k in demo}) == 30
    # The optional collectors describe the same site: every package named, every DP described,
    # one content state per package on each DP it was sent to.
    def of_demo(family: str) -> list[dict[str, str]]:
        return [dict(k) for k in got[family] if dict(k)["target"] == "demo"]

    assert {k["package_id"] for k in of_demo("sccm_package_info")} == {dict(k)["package_id"] for k in demo}
    copies = {(dict(k)["package_id"], dict(k)["server"]) for k in demo if dict(k)["type"] == "copy"}
    assert {(k["package_id"], k["server"]) for k in of_demo("sccm_dp_content_state")} == copies
    states = got["sccm_dp_content_state_packages"]
    assert sum(v for k, v in states.items() if dict(k)["target"] == "demo") == len(copies)
    assert {k["server"] for k in of_demo("sccm_distribution_point_info")} == {server for _, server in copies}
    up = {(dict(k)["target"], dict(k)["collector"]): v for k, v in got["sccm_collector_up"].items()}
    assert up == {("demo", "package_status"): 1, ("demo", "package_info"): 1, ("demo", "dp_info"): 1,
                  ("demo", "dp_content_state"): 1, ("other", "package_status"): 1, ("other", "package_info"): 1,
                  ("other", "dp_info"): 1, ("other", "dp_status"): 1, ("other", "dp_drive"): 1,
                  ("other", "dp_groups"): 1}
    # The DP collectors (on by default: the other target) describe that target's DPs, no other.
    def servers_of(family: str) -> set[str]:
        return {dict(k)["server"] for k in got[family] if dict(k)["target"] == "other"}

    dps = servers_of("sccm_distribution_point_info")
    assert dps and servers_of("sccm_distribution_point_status") == dps
    assert servers_of("sccm_distribution_point_monitored") == dps
    assert servers_of("sccm_distribution_point_drive_size_bytes") == dps
    assert servers_of("sccm_dp_group_member") <= dps


def test_probe_serves_one_target_and_unknown_target_is_a_clear_404(
    tmp_path: Path, run_exporter: StartExporter, promtool: str
) -> None:
    exporter = run_exporter(demo_config(tmp_path))
    exporter.wait_ready()
    text = exporter.scrape("/probe?target=other")
    promtool_check_metrics(promtool, text)
    got = parse_samples(text)
    assert {dict(k)["target"] for k in got["sccm_package_status"]} == {"other"}
    assert got["sccm_up"] == {labels(target="other"): 1.0}
    assert "sccm_exporter_build_info" not in got  # the exporter's, not the target's: on /metrics only
    missing = exporter.get("/probe?target=nope")
    assert missing.status == 404
    assert "unknown target 'nope'" in missing.text and "demo, other" in missing.text
    assert exporter.get("/probe").status == 400


def test_metrics_adds_the_exporters_own_process_python_and_http_metrics_and_a_probe_none(
    tmp_path: Path, run_exporter: StartExporter, promtool: str
) -> None:
    exporter = run_exporter(demo_config(tmp_path))
    exporter.wait_ready()
    text = exporter.scrape()
    promtool_check_metrics(promtool, text)
    got = parse_samples(text)
    assert set(got) >= RUNTIME_FAMILIES | HTTP_FAMILIES | {"sccm_exporter_build_info"}
    assert got["process_resident_memory_bytes"][()] > 1e6 and got["process_open_fds"][()] > 2
    assert all(family.documentation for family in text_string_to_metric_families(text))
    assert got["sccm_exporter_http_requests_in_flight"] == {(): 1.0}  # this scrape
    before = got["sccm_exporter_http_requests_total"]
    assert before[labels(handler="/-/ready", code="200")] >= 1  # wait_ready's
    assert exporter.get("/nothing-here").status == 404
    assert exporter.get("/-/healthy").status == 200
    zipped = exporter.get("/metrics", {"Accept-Encoding": "gzip"})
    after = parse_samples(gunzip(zipped.body))["sccm_exporter_http_requests_total"]
    for key, added in ((labels(handler="/metrics", code="200"), 1), (labels(handler="other", code="404"), 1),
                       (labels(handler="/-/healthy", code="200"), 1)):
        assert after[key] == before.get(key, 0) + added, key
    probe = exporter.scrape("/probe?target=demo")
    promtool_check_metrics(promtool, probe)
    names = set(parse_samples(probe))
    assert "sccm_package_status" in names
    assert not {n for n in names if n.startswith(("process_", "python_", "sccm_exporter_"))}
    # Each target's own schedule, on /metrics for every target and on its /probe for itself.
    assert got["sccm_target_interval_seconds"] == {labels(target="demo"): 2.0, labels(target="other"): 2.0}
    assert got["sccm_target_stale_after_seconds"] == {labels(target="demo"): 60.0, labels(target="other"): 60.0}
    assert parse_samples(probe)["sccm_target_stale_after_seconds"] == {labels(target="demo"): 60.0}


def test_health_ready_landing_page_and_gzip(tmp_path: Path, run_exporter: StartExporter) -> None:
    exporter = run_exporter(demo_config(tmp_path))
    exporter.wait_ready()
    assert exporter.get("/-/healthy").status == 200
    assert exporter.get("/-/ready").status == 200
    landing = exporter.get("/")
    assert landing.status == 200 and "text/html" in landing.headers["Content-Type"]
    assert "demo" in landing.text and "/probe?target=other" in landing.text
    assert "package_info: up, 30 rows" in landing.text and "dp_content_state: up" in landing.text
    plain = exporter.get("/metrics")
    zipped = exporter.get("/metrics", {"Accept-Encoding": "gzip"})
    assert zipped.headers.get("Content-Encoding") == "gzip"
    assert len(zipped.body) < len(plain.body)
    assert parse_samples(gunzip(zipped.body))["sccm_package_status_rows"] == \
        parse_samples(plain.text)["sccm_package_status_rows"]
    assert exporter.get("/nothing-here").status == 404


def test_file_source_serves_the_exported_rows(tmp_path: Path, run_exporter: StartExporter) -> None:
    csv = tmp_path / "status.csv"
    csv.write_bytes(
        "\ufeff\"PackageID\",\"PkgServer\",\"SiteCode\",\"Status\",\"Type\",\"Personality\",\"UpdateTime\"\r\n"
        "\"ABC00001\",\"[\"\"Display=\\\\DP01.corp\\\"\"]MSWNET:[\"\"SMS_SITE=ABC\"\"]\\\\DP01.corp\\\",\"ABC\","
        "\"5\",\"2\",\"0\",\"20240501102233.000000+000\"\r\n"
        "\"ABC00001\",\"\\\\CM01.corp\\\",\"ABC\",\"3\",\"1\",\"0\",\"20240501100000.500000+060\"\r\n".encode()
    )
    config = write(tmp_path / "file.yaml", f"targets:\n  - {{name: offline, source: file, path: {csv}}}\n")
    exporter = run_exporter(config)
    exporter.wait_ready()
    got = exporter.samples()
    failed = labels(target="offline", site="ABC", package_id="ABC00001", server="DP01.corp", type="copy",
                    status="failed", personality="none")
    assert got["sccm_package_status"][failed] == 1
    assert got["sccm_package_status_update_timestamp_seconds"][failed] == 1714558953.0
    master = labels(target="offline", site="ABC", package_id="ABC00001", server="CM01.corp", type="master",
                    status="installed", personality="none")
    assert got["sccm_package_status_update_timestamp_seconds"][master] == 1714554000.5
    assert got["sccm_package_status_servers"][
        labels(target="offline", site="ABC", package_id="ABC00001", status="failed")] == 1


def test_check_config_validates_without_starting(tmp_path: Path) -> None:
    good = subprocess.run([console_script(), "--check-config", "--config.file", str(demo_config(tmp_path))],
                          capture_output=True, text=True, timeout=30)
    assert good.returncode == 0 and "valid" in good.stdout
    bad = write(tmp_path / "bad.yaml", "targets:\n  - {name: x, source: winrm, host: h, auth: {transport: ntml}}\n")
    result = subprocess.run([console_script(), "--check-config", "--config.file", str(bad)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "targets[0].auth.transport" in result.stderr


def test_invalid_config_exits_1_before_listening(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "targets: []\n")
    result = subprocess.run([console_script(), "--config.file", str(bad), "--web.listen-address", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "listening" not in result.stderr


def test_help_lists_every_flag() -> None:
    result = subprocess.run([console_script(), "--help"], capture_output=True, text=True, timeout=30)
    for flag in ("--config.file", "--web.listen-address", "--log.level", "--log.format", "--check-config"):
        assert flag in result.stdout


def test_sigterm_stops_cleanly(tmp_path: Path, run_exporter: StartExporter) -> None:
    exporter = run_exporter(demo_config(tmp_path))
    exporter.wait_ready()
    assert exporter.stop() == 0
    assert 'msg=stopped' in exporter.log()


def export_csv(rows: list[Row]) -> bytes:
    """The rows as Windows PowerShell 5.1 writes `Get-WmiObject ... | Export-Csv -Encoding UTF8`:
    BOM, #TYPE line, every field quoted, CRLF, DMTF datetimes, extra columns."""
    columns = ["__GENUS", "__CLASS", "Location", "PackageID", "Personality", "PkgServer", "ShareName", "SiteCode",
               "Status", "Type", "UpdateTime", "PSComputerName"]

    def field(row: Row, name: str) -> str:
        value = {"__GENUS": 2, "__CLASS": "SMS_PackageStatus", "PSComputerName": "CM01"}.get(name, row.get(name))
        if isinstance(value, datetime):
            value = value.astimezone(UTC).strftime("%Y%m%d%H%M%S.%f") + "+000"
        text = "" if value is None else str(value)
        return '"' + text.replace('"', '""') + '"'

    lines = ["#TYPE System.Management.ManagementObject#root\\SMS\\site_ABC\\SMS_PackageStatus",
             ",".join(f'"{c}"' for c in columns)]
    lines += [",".join(field(row, c) for c in columns) for row in rows]
    return b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n"


def convert_to_json(rows: list[Row]) -> bytes:
    """The rows as PowerShell 7 writes `... | ConvertTo-Json | Out-File -Encoding unicode`:
    UTF-16 LE with BOM, CRLF, ISO datetimes with 7 fraction digits and an offset."""

    def value(v: object) -> object:
        return v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0+00:00") if isinstance(v, datetime) else v

    text = json.dumps([{k: value(v) for k, v in row.items()} for row in rows], indent=2).replace("\n", "\r\n")
    return b"\xff\xfe" + text.encode("utf-16-le")


def test_file_source_serves_an_export_of_a_whole_site_exactly(
    tmp_path: Path, run_exporter: StartExporter, promtool: str
) -> None:
    dataset = three_site_dataset()
    abc = dataset["root\\SMS\\site_ABC"]["SMS_PackageStatus"]
    defg = dataset["root\\SMS\\site_DEF"]["SMS_PackageStatus"]
    (tmp_path / "abc.csv").write_bytes(export_csv(abc))
    (tmp_path / "def.json").write_bytes(convert_to_json(defg))
    config = write(tmp_path / "files.yaml", """
targets:
  - {name: abc, source: file, path: abc.csv}
  - {name: def, source: file, path: def.json}
""")
    exporter = run_exporter(config)
    exporter.wait_ready()
    text = exporter.scrape()
    promtool_check_metrics(promtool, text)
    got = parse_samples(text)
    assert got["sccm_up"] == {labels(target="abc"): 1.0, labels(target="def"): 1.0}
    check_target(got, "abc", "ABC", abc)
    check_target(got, "def", "DEF", defg)


def test_demo_site_has_one_master_row_per_package_and_one_copy_row_per_package_and_dp(
    tmp_path: Path, run_exporter: StartExporter
) -> None:
    exporter = run_exporter(demo_config(tmp_path, packages=30, servers=8))
    exporter.wait_ready()
    got = exporter.samples()
    rows = [dict(k) for k in got["sccm_package_status"] if dict(k)["target"] == "demo"]
    masters = Counter(r["package_id"] for r in rows if r["type"] == "master")
    copies = Counter((r["package_id"], r["server"]) for r in rows if r["type"] == "copy")
    assert len(masters) == 30 and set(masters.values()) == {1}
    assert len(copies) == 30 * 8 and set(copies.values()) == {1}
    assert len(rows) == 30 * 9


def test_web_config_serves_tls_with_basic_auth_and_refuses_without(
    tmp_path: Path, run_exporter: StartExporter
) -> None:
    cert_path, key_path = make_self_signed_cert(str(tmp_path))
    cert, key = Path(cert_path), Path(key_path)
    hashed = bcrypt.hashpw(b"scrape-secret", bcrypt.gensalt(4)).decode()
    web = write(tmp_path / "web.yml", f"""tls_server_config:
  cert_file: {cert}
  key_file: {key}
basic_auth_users:
  prometheus: '{hashed}'
http_server_config:
  headers:
    X-Content-Type-Options: nosniff
""")
    exporter = run_exporter(demo_config(tmp_path), ["--web.config.file", str(web)], tls_ca=cert,
                            auth=("prometheus", "scrape-secret"))
    exporter.wait_ready()
    scraped = exporter.get("/metrics")
    assert scraped.status == 200 and "sccm_up" in scraped.text
    assert scraped.headers["X-Content-Type-Options"] == "nosniff"
    context = ssl.create_default_context(cafile=str(cert))
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"prometheus:wrong").decode()}):
        refused = http_get(exporter.base + "/metrics", headers, context=context)
        assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
        assert "sccm" not in refused.text
    with pytest.raises(OSError):  # plain HTTP to a TLS port gets no answer
        http_get(f"http://127.0.0.1:{exporter.port}/metrics", timeout=3)
    # POST /-/reload is protected like every endpoint.
    for headers, status in (({}, 401), (exporter.auth_headers, 200)):
        request = urllib.request.Request(exporter.base + "/-/reload", data=b"", method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                assert response.status == status
        except urllib.error.HTTPError as exc:
            assert exc.code == status
    assert "scrape-secret" not in exporter.log()


def test_invalid_web_config_exits_1_with_the_key_path(tmp_path: Path) -> None:
    web = write(tmp_path / "web.yml", "tls_server_config:\n  cert_file: /nonexistent.pem\n  key_fil: x\n")
    result = subprocess.run([console_script(), "--config.file", str(demo_config(tmp_path)),
                             "--web.config.file", str(web)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "tls_server_config.key_fil" in result.stderr


def test_a_real_prometheus_scrapes_over_tls_with_basic_auth(tmp_path: Path, run_exporter: StartExporter) -> None:
    prometheus = require_tool("prometheus")
    cert_path, key_path = make_self_signed_cert(str(tmp_path))
    hashed = bcrypt.hashpw(b"scrape-secret", bcrypt.gensalt(4)).decode()
    web = write(tmp_path / "web.yml", f"tls_server_config:\n  cert_file: {cert_path}\n  key_file: {key_path}\n"
                                      f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    exporter = run_exporter(demo_config(tmp_path), ["--web.config.file", str(web)], tls_ca=Path(cert_path),
                            auth=("prometheus", "scrape-secret"))
    exporter.wait_ready()
    password_file = write(tmp_path / "scrape_password", "scrape-secret\n")
    config = write(tmp_path / "prometheus.yml", f"""global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: sccm
    scheme: https
    tls_config: {{ca_file: {cert_path}}}
    basic_auth: {{username: prometheus, password_file: {password_file}}}
    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]
  - job_name: sccm-wrong-password
    scheme: https
    tls_config: {{ca_file: {cert_path}}}
    basic_auth: {{username: prometheus, password: wrong}}
    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]
""")
    port = free_port()
    server = Server("prometheus", [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "prometheus.log",
                    f"http://127.0.0.1:{port}/-/ready")
    try:
        server.wait_ready()

        def health() -> dict[str, str]:
            body = json.loads(http_get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).body)
            return {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}

        end = time.monotonic() + 30
        while health() != {"sccm": "up", "sccm-wrong-password": "down"}:
            assert time.monotonic() < end, f"{health()}\n{server.log()}"
            time.sleep(0.5)
        query = urllib.parse.urlencode({"query": 'sccm_up{job="sccm"}'})
        result = json.loads(http_get(f"http://127.0.0.1:{port}/api/v1/query?{query}", timeout=5).body)
        assert {r["metric"]["target"]: r["value"][1] for r in result["data"]["result"]} == {"demo": "1", "other": "1"}
    finally:
        server.stop()
    assert "scrape-secret" not in exporter.log()
