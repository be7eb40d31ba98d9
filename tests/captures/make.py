"""Makes the captures of tests/captures/ again from the WS-Management test server:
`.venv/bin/python tests/captures/make.py [NAME ...]` (all of them without a name).

Each capture is one poll through real pywinrm recorded by `exporter.capture.Recorder`: the
property-list ones as a user makes one (`sccm-package-exporter --check-target NAME --record DIR`,
`--anonymize` for `faults`), `select-star` by `WinRMSource(property_list=False)` (no configuration
asks for SELECT *); against tests/wsman_server.py serving a small site in small pages
(several Pulls per class), over NTLM with message encryption: the files hold the decrypted text.
`CASES` says what each shows. tests/test_captures.py replays every directory here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the data sets, the test server, the poll helper

from conftest import record_poll  # noqa: E402
from datasets import Dataset, single_site_dataset, site_namespace  # noqa: E402
from wsman_server import DEFAULT_USERS, WSManServer  # noqa: E402

from exporter.capture import Summary, load_capture  # noqa: E402
from exporter.config import AuthConfig, TargetConfig  # noqa: E402

SITE = "P01"
USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
PAGE_BYTES = 700  # two or three instances a page


def dataset() -> Dataset:
    """One site of three packages on two DPs; no package icons (kilobytes of base64 each)."""
    data = single_site_dataset(SITE, packages=3, servers=2, seed=5)
    for row in data[site_namespace(SITE)]["SMS_PackageBaseclass"]:
        row.pop("Icon", None)
    return data


def _faults(server: WSManServer) -> None:
    server.class_faults = {"SMS_DPStatusInfo": "access_denied"}
    server.remove_class(site_namespace(SITE), "SMS_DistributionPointDriveInfo")
    server.fault_next("pull", "invalid_context", class_name="SMS_PackageStatus")


@dataclass(frozen=True)
class Case:
    """One capture: the collectors polled, how (property lists or SELECT *, slices, the site code
    configured or discovered), anonymized or not, and what the server does besides answering."""

    collectors: tuple[str, ...]
    property_list: bool = True
    parallel: int = 1
    site_code: str | None = None
    anonymize: bool = False
    setup: Callable[[WSManServer], None] = lambda server: None


CASES: dict[str, Case] = {
    # The default shape: WQL property lists (w:XmlFragment items), the site code discovered from
    # SMS_ProviderLocation, SMS_PackageStatus read in two PackageID slices at once.
    "property-list": Case(("package_status", "package_info", "dp_groups"), parallel=2),
    # SELECT * (class URIs, p:<class> items), as WinRMSource(property_list=False) reads.
    "select-star": Case(("package_status", "dp_info"), property_list=False, site_code=SITE),
    # Faults among answers, anonymized: access denied on SMS_DPStatusInfo, no class
    # SMS_DistributionPointDriveInfo, an expired context on a Pull of SMS_PackageStatus (restarted).
    "faults": Case(("package_status", "package_info", "dp_status", "dp_drive"), parallel=2, site_code=SITE,
                   anonymize=True, setup=_faults),
}


def make(name: str, directory: Path) -> Summary:
    """Record capture `name` of `CASES` into `directory` (replaced)."""
    case = CASES[name]
    shutil.rmtree(directory, ignore_errors=True)
    with WSManServer(dataset(), users={USER: PASSWORD}, auth=("ntlm",), page_bytes=PAGE_BYTES) as server:
        case.setup(server)
        target = TargetConfig(
            name=name, source="winrm", interval=300, timeout=30, per_row="all", stale_after=900,
            host="127.0.0.1", port=server.port, scheme="http", site_code=case.site_code,
            auth=AuthConfig(transport="ntlm", username=USER, password=PASSWORD),
            parallel_enumerations=case.parallel, collectors=frozenset(case.collectors),
        )
        if not case.property_list:  # SELECT * is no configuration a user can give: the poll directly
            return record_poll(target, directory, property_list=False, anonymize=case.anonymize)
        return _check_target(target, directory, case.anonymize)


def _check_target(target: TargetConfig, directory: Path, anonymize: bool) -> Summary:
    """The capture as a user makes one: `sccm-package-exporter --check-target NAME --record DIR`."""
    config = directory.parent / f".{directory.name}.yaml"
    config.write_text(
        f"defaults: {{collectors: [{', '.join(sorted(target.collectors))}], "
        f"parallel_enumerations: {target.parallel_enumerations}}}\n"
        f"targets:\n  - {{name: {target.name}, source: winrm, host: {target.host}, port: {target.port}, "
        f"scheme: http{f', site_code: {target.site_code}' if target.site_code else ''},\n"
        f"     auth: {{transport: ntlm, username: '{USER}', password: '{PASSWORD}'}}}}\n"
    )
    try:
        subprocess.run([str(HERE.parent.parent / ".venv/bin/sccm-package-exporter"), "--config.file", str(config),
                        "--check-target", target.name, "--record", str(directory),
                        *(["--anonymize"] if anonymize else [])], capture_output=True, timeout=60)
    finally:
        config.unlink()
    capture = load_capture(directory)
    assert capture.summary is not None
    return capture.summary


def main(names: list[str]) -> None:
    for name in names or list(CASES):
        summary = make(name, HERE / name)
        outcomes = ", ".join(f"{collector} {'ok' if outcome.ok else outcome.reason} {outcome.rows} rows"
                             for collector, outcome in summary.collectors.items())
        print(f"{name}: {outcomes}")


if __name__ == "__main__":
    main(sys.argv[1:])
