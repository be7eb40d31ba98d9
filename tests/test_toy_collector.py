"""Adding a collector is one module plus its registration, and nothing else.

A copy of the package gets a toy collector (a class, a property list, one family) in one new
module and one line of registration in `exporter/collectors/__init__.py`; the copy then runs as a
user runs it (`python -m exporter`), reads the toy class over real pywinrm from the loopback
WS-Management server, and serves its family on /metrics and /probe, with its health, and lets
the configuration name it. Nothing else of the package is touched: the test checks so.
"""

from __future__ import annotations

import filecmp
import shutil
import sys
from pathlib import Path

from conftest import ExporterProcess, labels, promtool_check_metrics
from datasets import make_site
from wsman_server import DEFAULT_USERS, WSManServer

import exporter

USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
REGISTRY = Path("exporter") / "collectors" / "__init__.py"
TOY_MODULE = Path("exporter") / "collectors" / "toy.py"

TOY = '''"""A toy collector: SMS_Toy's Count by Name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from exporter.collectors.spec import ClassRead, CollectorSpec
from exporter.families import Exposition, Family, PerRow, escape_label_value, format_value, lines_piece
from exporter.rows import RowError, item_text, parse_int
from exporter.wmi import Item, Query

QUERY = Query("SMS_Toy", ("Name", "Count"))
COUNT = Family("sccm_toy_items", "gauge", "SMS_Toy.Count by Name.")


class ToyRow(NamedTuple):
    name: str
    count: int


def parse_item(item: Item, site: str) -> ToyRow:
    count = parse_int("Count", item_text(item, "Count"))
    if count is None:
        raise RowError("Count is missing")
    return ToyRow(item_text(item, "Name") or "", count)


class ToyAggregate:
    def __init__(self, per_row: PerRow) -> None:
        self._rows: dict[str, int] = {}

    @property
    def rows(self) -> int:
        return len(self._rows)

    def add(self, rows: Iterable[ToyRow]) -> None:
        for row in rows:
            self._rows[row.name] = row.count

    def render(self, target: str, own_site: str | None) -> Exposition:
        lines = [f'{COUNT.name}{{target="{escape_label_value(target)}",name="{escape_label_value(name)}"}} '
                 f"{format_value(count)}\\n" for name, count in self._rows.items()]
        return Exposition.of({COUNT.name: lines_piece(lines)}, self.rows)


SPEC = CollectorSpec("toy", (ClassRead(QUERY, parse_item),), (COUNT,), ToyAggregate)
'''


def package_with_the_toy(tmp_path: Path) -> Path:
    """A copy of the package with the toy module and its registration; returns the copy's root."""
    root = tmp_path / "site-packages"
    source = Path(exporter.__file__).parent
    shutil.copytree(source, root / "exporter", ignore=shutil.ignore_patterns("__pycache__"))
    (root / TOY_MODULE).write_text(TOY, encoding="utf-8")
    registry = (root / REGISTRY).read_text(encoding="utf-8")
    imports, last_spec = "    package_status,\n)\n", "        dp_groups.SPEC,\n"
    assert imports in registry and last_spec in registry
    registry = registry.replace(imports, "    package_status,\n    toy,\n)\n").replace(last_spec,
                                                                                   last_spec + "        toy.SPEC,\n")
    (root / REGISTRY).write_text(registry, encoding="utf-8")
    return root


def changed_files(original: Path, copy: Path) -> list[str]:
    """Every file that differs between two trees, or is only in one of them (caches aside)."""
    found: list[str] = []

    def walk(comparison: filecmp.dircmp[str], prefix: Path) -> None:
        names = comparison.diff_files + comparison.left_only + comparison.right_only
        found.extend(str(prefix / name) for name in names if name != "__pycache__")
        for name, sub in comparison.subdirs.items():
            if name != "__pycache__":
                walk(sub, prefix / name)

    walk(filecmp.dircmp(original, copy), Path("exporter"))
    return sorted(found)


def test_a_toy_collector_in_one_module_is_served_end_to_end(tmp_path: Path, promtool: str) -> None:
    root = package_with_the_toy(tmp_path)
    assert changed_files(Path(exporter.__file__).parent, root / "exporter") == sorted(
        [str(REGISTRY), str(TOY_MODULE)])

    toys = [{"Name": "alpha", "Count": 3}, {"Name": 'b"eta', "Count": 0}, {"Name": "gamma", "Count": 12}]
    dataset = {"root\\SMS\\site_ABC": {"SMS_PackageStatus": make_site("ABC", 4, 2, 1), "SMS_Toy": toys}}
    secret = tmp_path / "cm_password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    with WSManServer(dataset) as provider:
        config = tmp_path / "config.yaml"
        config.write_text(
            "defaults: {interval: 1m, timeout: 10s, collectors: [toy]}\n"
            "targets:\n"
            f"  - {{name: abc, source: winrm, host: 127.0.0.1, port: {provider.port}, scheme: http, "
            f"site_code: ABC, auth: {{transport: ntlm, username: '{USER}', password_file: {secret}}}}}\n",
            encoding="utf-8",
        )
        process = ExporterProcess(config, tmp_path / "exporter.log", command=[sys.executable, "-m", "exporter"],
                                  env={"PYTHONPATH": str(root)}, cwd=tmp_path)
        try:
            process.wait_ready()
            got = process.wait_for("the toy's family", lambda s: "sccm_toy_items" in s)
            assert got["sccm_toy_items"] == {
                labels(target="abc", name="alpha"): 3, labels(target="abc", name='b"eta'): 0,
                labels(target="abc", name="gamma"): 12,
            }
            assert got["sccm_collector_up"] == {
                labels(target="abc", collector="package_status"): 1, labels(target="abc", collector="toy"): 1,
            }
            assert "sccm_toy_items" in process.samples("/probe?target=abc")
            promtool_check_metrics(promtool, process.scrape())
            # The toy's class was asked for with its own property list, nothing else of it.
            assert {r.wql for r in provider.requests_of("SMS_Toy", "enumerate")} == {"SELECT Name, Count FROM SMS_Toy"}
            # The copy ran, not the installed package: the log names the toy's read.
            assert 'collector=toy' in process.log()
        finally:
            process.stop()
