"""Coverage-guided fuzzing of the reply parsers with atheris (issue 5, item 5).

    python tests/fuzz_pages.py -atheris_runs=200000     # or without a limit, until a crash

Every input goes through what the WinRM source does with a reply body (see
tests/test_parser_properties.py for the same property under hypothesis); any exception other
than `PollError` is a crash, which libFuzzer reports with the input that caused it. Seeds: the
Windows-like fixtures. tests/test_parser_properties.py runs this for a few
thousand inputs when atheris is installed.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from conftest import status_rows

    from exporter.collectors.package_status.pages import PageReader
    from exporter.errors import PollError
    from exporter.winrm import faults, pages

FIXTURES = Path(__file__).parent / "fixtures" / "wsman"


def one_input(data: bytes) -> None:
    for read in (
        lambda: status_rows(pages.split_page(data), "ABC", PageReader("ABC")),
        lambda: pages.parse_page(data),
        lambda: faults.fault_error(faults.parse_fault(data), namespace="root\\SMS\\site_ABC",
                                  class_name="SMS_PackageStatus"),
    ):
        with contextlib.suppress(PollError):
            read()


def main(argv: list[str]) -> None:
    # Seeds given as files (never as a corpus folder, which libFuzzer would write new inputs to).
    seeds = ",".join(str(p) for p in sorted(FIXTURES.glob("*.xml")))
    atheris.Setup([*argv, f"-seed_inputs={seeds}"] if seeds else argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
