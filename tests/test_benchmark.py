"""benchmarks/: the synthetic site is what the benchmark says it is, and the one command runs.

The benchmark itself is not part of the suite (it takes minutes and its figures belong in
benchmarks/RESULTS.md, not in assertions); a 2,000-row run proves the command works end to end:
the test server, the exporter and the naive baseline in their own processes, scrapes over HTTP.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_SPEC = importlib.util.spec_from_file_location("synthetic", REPO / "benchmarks" / "synthetic.py")
assert _SPEC is not None and _SPEC.loader is not None
synthetic = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(synthetic)
SITE, site_rows = synthetic.SITE, synthetic.site_rows


def test_synthetic_site_shape() -> None:
    rows = site_rows(40, 49)
    assert len(rows) == 40 * 50 and rows == site_rows(40, 49)  # deterministic
    copies = [row for row in rows if row["Type"] == 2]
    assert len(copies) == 40 * 49 and sum(row["Type"] == 1 for row in rows) == 40
    not_installed = sum(row["Status"] != 3 for row in copies) / len(copies)
    assert 0.03 < not_installed < 0.07
    assert Counter(row["Status"] for row in rows)[9] == 2  # undocumented values occur
    last = Counter(row["PackageID"][-1] for row in rows)
    assert len(last) == 16 and max(last.values()) - min(last.values()) <= 2 * 50  # even slices
    servers = [row["PkgServer"] for row in copies]
    assert sum(value.startswith('["Display=') for value in servers) / len(servers) > 0.85
    assert all(row["SiteCode"] == SITE and row["PackageID"].startswith(SITE) for row in rows)


def test_the_benchmark_command_runs_and_prints_its_table(tmp_path: Path) -> None:
    report = tmp_path / "results.md"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--sizes", "smoke", "--results", str(report)],
        capture_output=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr.decode()
    table = result.stdout.decode()
    assert "| 2k (2,000) | all | 4,962 |" in table
    assert "naive fill s" in table and "scrape ratio" in table
    written = report.read_text()
    assert written.startswith("# Benchmark results\n") and "\nMeasured " in written and " cores, " in written
    assert "| 2k (2,000) | all | 4,962 |" in written


def test_the_load_test_runs_without_a_failed_scrape(tmp_path: Path) -> None:
    # The real run is 50 scrapers for 10 s on 100k rows (benchmarks/load.py); this one proves the
    # command and the no-failed-scrape check on 2,000 rows, with the 50 scrapers for 2 s.
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "load.py"), "--scrapers", "50", "--seconds", "2",
         "--packages", "20", "--servers", "99", "--interval", "1"],
        capture_output=True, timeout=120, cwd=tmp_path,
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    row = out.splitlines()[2].split("|")
    assert row[1].strip() == "2,000" and row[2].strip() == "50" and row[5].strip() == "0"


def test_the_synthetic_collector_classes_match_the_site() -> None:
    classes = synthetic.site_classes(20, 9)
    status, info = classes["SMS_PackageStatus"], classes["SMS_PackageBaseclass"]
    dps, content = classes["SMS_DistributionPointInfo"], classes["SMS_PackageStatusDistPointsSummarizer"]
    assert status == site_rows(20, 9) and classes == synthetic.site_classes(20, 9)  # the core rows unchanged
    assert [row["PackageID"] for row in info] == sorted({row["PackageID"] for row in status})
    assert [row["ServerName"] for row in dps] == [synthetic.dp_host(index) for index in range(1, 10)]
    copies = [row for row in status if row["Type"] == 2]
    assert len(content) == len(copies) == 20 * 9
    assert len({(row["PackageID"], row["ServerNALPath"]) for row in content}) == len(content)
    states = synthetic.STATE_OF_STATUS
    assert [row["State"] for row in content] == [states[row["Status"]] for row in copies]


def test_the_collectors_benchmark_runs_and_prints_every_configuration(tmp_path: Path) -> None:
    # The real run is 10k to 200k rows (benchmarks/collectors.py, a few minutes); this one proves
    # the command end to end on 2,000 rows: the server and each configuration in their own processes.
    report = tmp_path / "collectors.md"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "collectors.py"), "--sizes", "smoke", "--results", str(report)],
        capture_output=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    for configuration in ("package_status", "default", "+ dp_content_state", "all four"):
        assert f"| 2k | {configuration} | " in out
    assert "| 2k | all four | " in out and "| 2,000 / 20 / 99 / 1,980 |" in out  # rows of every class
    for name in ("package_status", "package_info", "dp_info", "dp_content_state"):
        assert f"| 2k | {name} | " in out  # read alone
    assert "20 ms injected" in out
    assert out.count("* 2k, default ") == 1 and out.count("* 2k, + dp_content_state ") == 1
    assert "* 2k, 20 ms per request, default " in out
    written = report.read_text()
    assert written.startswith("## Optional collectors (issue 6)\n") and "| 2k | all four | " in written
    report.write_text("# Results\n\nkept\n\n" + written.replace("| 2k | all four | ", "| old |") + "\nafter\n")
    again = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "collectors.py"), "--sizes", "smoke", "--no-delay", "--results",
         str(report)], capture_output=True, timeout=120, cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr.decode()
    rewritten = report.read_text()  # the block between the markers replaced, the rest kept
    assert rewritten.startswith("# Results\n\nkept\n") and rewritten.endswith("\nafter\n")
    assert "| old |" not in rewritten and "| 2k | all four | " in rewritten and "20 ms injected" not in rewritten
