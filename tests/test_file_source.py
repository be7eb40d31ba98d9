"""The file source: files shaped as Windows PowerShell writes them become the exact rows."""

from __future__ import annotations

import importlib.util
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import collector_rows

from exporter.collectors.package_status.row import PackageStatusRow
from exporter.config import TargetConfig
from exporter.errors import PollError
from exporter.sources.file import FileSource, culture_datetime_as_iso, read_items

FIXTURES = Path(__file__).parent / "fixtures" / "file_source"
NAL_CM01 = '["Display=\\\\CM01.corp.example.com\\"]MSWNET:["SMS_SITE=ABC"]\\\\CM01.corp.example.com\\'
NAL_DP01 = '["Display=\\\\DP01.corp.example.com\\"]MSWNET:["SMS_SITE=ABC"]\\\\DP01.corp.example.com\\'
NAL_DP02 = 'MSWNET:["SMS_SITE=ABC"]\\\\dp02.Corp.Example.com\\'
CM01, DP01, DP02 = "CM01.corp.example.com", "DP01.corp.example.com", "dp02.Corp.Example.com"
MASTER, COPY = 1, 2


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def row(package_id: str, nal: str, server: str, type_: int, status: int, update_time: float | None) -> PackageStatusRow:
    return PackageStatusRow("ABC", package_id, server, type_, status, 0, update_time, nal)


def target(path: Path | str, site_code: str | None = None) -> TargetConfig:
    return TargetConfig(
        name="offline",
        source="file",
        interval=300,
        timeout=120,
        per_row="all",
        stale_after=900,
        path=str(path),
        site_code=site_code,
    )


def poll(path: Path | str, site_code: str | None = None) -> list[PackageStatusRow]:
    return list(collector_rows(FileSource(target(path, site_code)), "package_status", time.monotonic() + 60))


def poll_error(path: Path | str) -> PollError:
    with pytest.raises(PollError) as caught:
        poll(path)
    return caught.value


# --- the fixtures are what Windows writes ---------------------------------------------------


def test_committed_fixtures_are_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("generate", FIXTURES / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for name, data in generate.fixture_bytes().items():
        assert (FIXTURES / name).read_bytes() == data, f"{name}: run tests/fixtures/file_source/generate.py"


@pytest.mark.parametrize(
    ("name", "start"),
    [
        ("wmiobject_type_line_utf8_bom_crlf.csv", b"\xef\xbb\xbf#TYPE "),
        ("ciminstance_en_us_utf16le_bom.csv", b"\xff\xfe#\x00T\x00"),
        ("ps51_date_ms_utf16le_bom.json", b"\xff\xfe[\x00\r\x00\n\x00"),
        ("single_object_dmtf_utf8_bom.json", b"\xef\xbb\xbf{\r\n"),
        ("ps7_iso_dates_utf8_no_bom.json", b"[\r\n"),
    ],
)
def test_fixture_carries_bom_and_crlf(name: str, start: bytes) -> None:
    assert (FIXTURES / name).read_bytes().startswith(start)


# --- CSV ------------------------------------------------------------------------------------


def test_get_wmiobject_csv_utf8_bom_with_type_line() -> None:
    assert poll(FIXTURES / "wmiobject_type_line_utf8_bom_crlf.csv") == [
        row("ABC00012", NAL_CM01, CM01, MASTER, 3, utc(2024, 5, 1, 10, 22, 33)),
        row("ABC00012", NAL_DP01, DP01, COPY, 3, utc(2024, 5, 1, 10, 30, 15)),
        # DMTF +120: 12:45 at UTC+2 is 10:45 UTC. The host name keeps its case.
        row("ABC00012", NAL_DP02, DP02, COPY, 4, utc(2024, 5, 1, 10, 45, 0)),
        # An unknown Status stays a number; an empty UpdateTime is nil.
        row("ABC00013", NAL_DP01, DP01, COPY, 9, None),
    ]


def test_get_ciminstance_csv_utf16le_en_us_dates_read_as_utc() -> None:
    assert poll(FIXTURES / "ciminstance_en_us_utf16le_bom.csv") == [
        row("ABC00012", NAL_CM01, CM01, MASTER, 3, utc(2024, 5, 1, 10, 22, 33)),
        row("ABC00012", NAL_DP01, DP01, COPY, 2, utc(2024, 5, 1, 12, 5, 9)),
        row("ABC00014", NAL_DP02, DP02, COPY, 5, utc(2023, 12, 31, 0, 0, 1)),  # 12:00:01 AM
    ]


def test_get_ciminstance_csv_de_de_semicolons_and_dotted_dates() -> None:
    assert poll(FIXTURES / "ciminstance_de_de_semicolon_utf8_bom.csv") == [
        row("ABC00012", NAL_DP01, DP01, COPY, 3, utc(2024, 5, 1, 10, 22, 33)),
        row("ABC00015", NAL_DP02, DP02, COPY, 7, utc(2023, 12, 31, 23, 59, 59)),
    ]


def test_ps7_csv_without_bom_or_type_line_iso_dates() -> None:
    assert poll(FIXTURES / "ciminstance_iso_dates_ps7_no_bom.csv") == [
        row("ABC00012", NAL_DP01, DP01, COPY, 3, utc(2024, 5, 1, 10, 22, 33)),
        row("ABC00016", NAL_DP02, DP02, COPY, 6, utc(2024, 5, 2)),
    ]


def test_bad_row_fails_the_poll_naming_file_line_and_field() -> None:
    error = poll_error(FIXTURES / "bad_status_row.csv")
    assert error.reason == "parse"
    # Line 5 of the file: the #TYPE line and the header come first.
    assert str(error) == (
        f"{FIXTURES / 'bad_status_row.csv'} line 5: Status is not a number or a known name: 'Installing'"
    )


def test_csv_enum_names_and_lower_case_header(tmp_path: Path) -> None:
    path = tmp_path / "names.csv"
    path.write_text(
        "packageid,pkgserver,sitecode,STATUS,type,personality,updatetime\r\n"
        "ABC00012,\\\\DP01.corp.example.com\\SMSPKGD$,ABC,PENDING_REMOVE,Copy,FPNW,2024-05-01T10:22:33Z\r\n"
    )
    assert poll(path) == [
        PackageStatusRow(
            "ABC", "ABC00012", DP01, COPY, 7, 2, utc(2024, 5, 1, 10, 22, 33), "\\\\DP01.corp.example.com\\SMSPKGD$"
        )
    ]


def test_csv_header_only_is_zero_rows(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b'\xef\xbb\xbf"PackageID","PkgServer","SiteCode","Status","Type"\r\n')
    assert poll(path) == []


def test_csv_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('"PackageID","PkgServer","SiteCode"\r\n"ABC00012","DP01","ABC"\r\n')
    error = poll_error(path)
    assert error.reason == "parse"
    assert "line 1: header lacks Status, Type" in str(error)


def test_csv_truncated_row_fails(tmp_path: Path) -> None:
    # What a reader sees when it catches the file half-written.
    path = tmp_path / "x.csv"
    path.write_text('"PackageID","PkgServer","Status","Type"\r\n"ABC00012","DP01","3","2"\r\n"ABC0001')
    error = poll_error(path)
    assert error.reason == "parse"
    assert "line 3" in str(error)


def test_missing_site_code_takes_the_configured_one(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('"PackageID","PkgServer","Status","Type","SiteCode"\r\n"ABC00012","DP01","3","2",""\r\n')
    source = FileSource(target(path, site_code="XYZ"))
    assert [r.site for r in collector_rows(source, "package_status", time.monotonic() + 60)] == ["XYZ"]


def test_unsniffable_name_is_read_by_content(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_bytes((FIXTURES / "ps51_date_ms_utf16le_bom.json").read_bytes())
    assert len(poll(path)) == 2
    path.write_bytes((FIXTURES / "wmiobject_type_line_utf8_bom_crlf.csv").read_bytes())
    assert len(poll(path)) == 4


# --- culture datetimes (Get-CimInstance | Export-Csv) ------------------------------------------


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("5/1/2024 10:22:33 AM", "2024-05-01T10:22:33"),
        ("5/1/2024 12:22:33 AM", "2024-05-01T00:22:33"),
        ("5/1/2024 12:22:33 PM", "2024-05-01T12:22:33"),
        ("11/30/2024 1:02:03 pm", "2024-11-30T13:02:03"),
        ("2024-05-01 10:22:33", "2024-05-01T10:22:33"),
        ("2024/5/1 9:22:33", "2024-05-01T09:22:33"),
        ("01.05.2024 10:22:33", "2024-05-01T10:22:33"),
        # Forms parse_datetime knows pass through untouched.
        ("20240501102233.000000+000", "20240501102233.000000+000"),
        ("", ""),
    ],
)
def test_culture_datetime_forms(text: str, iso: str) -> None:
    assert culture_datetime_as_iso(text) == iso


def test_slashes_without_am_pm_are_refused_as_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        '"PackageID","PkgServer","Status","Type","UpdateTime"\r\n"A","DP01","3","2","01/05/2024 10:22:33"\r\n'
    )
    error = poll_error(path)
    assert error.reason == "parse"
    assert "line 2: UpdateTime '01/05/2024 10:22:33' may be day/month or month/day" in str(error)


@pytest.mark.parametrize("text", ["13/1/2024 10:22:33 AM", "5/1/2024 13:22:33 PM", "32.01.2024 10:00:00"])
def test_impossible_culture_dates_fail(tmp_path: Path, text: str) -> None:
    path = tmp_path / "x.csv"
    path.write_text(f'"PackageID","PkgServer","Status","Type","UpdateTime"\r\n"A","DP01","3","2","{text}"\r\n')
    error = poll_error(path)
    assert error.reason == "parse"
    assert "line 2: UpdateTime" in str(error)


# --- JSON -----------------------------------------------------------------------------------


def test_ps51_json_utf16le_with_date_ms_and_ets_date_object() -> None:
    assert poll(FIXTURES / "ps51_date_ms_utf16le_bom.json") == [
        row("ABC00012", NAL_CM01, CM01, MASTER, 3, utc(2024, 5, 1, 10, 22, 33)),
        row("ABC00012", NAL_DP01, DP01, COPY, 5, utc(2024, 5, 1, 11, 5, 33) + 0.5),
    ]


def test_ps7_json_iso_dates_and_case_insensitive_keys() -> None:
    assert poll(FIXTURES / "ps7_iso_dates_utf8_no_bom.json") == [
        row("ABC00012", NAL_DP01, DP01, COPY, 3, utc(2024, 5, 1, 10, 22, 33) + 0.1234567),
        row(
            "ABC00017",
            "\\\\dp03.corp.example.com\\SMSPKGD$",
            "dp03.corp.example.com",
            COPY,
            2,
            utc(2024, 5, 1, 10, 22, 33),
        ),
    ]


def test_single_object_json_is_one_row() -> None:
    # DMTF -300: 10:22:33 at UTC-5 is 15:22:33 UTC.
    assert poll(FIXTURES / "single_object_dmtf_utf8_bom.json") == [
        row("ABC00012", NAL_CM01, CM01, MASTER, 3, utc(2024, 5, 1, 15, 22, 33)),
    ]


def test_empty_array_json_is_zero_rows() -> None:
    assert poll(FIXTURES / "empty_array.json") == []


def test_ps51_value_count_wrapper_is_unwrapped(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"value": [{"PackageID": "A", "PkgServer": "DP01", "Status": 3, "Type": 2}], "Count": 1}')
    assert [(r.package_id, r.server, r.update_time) for r in poll(path)] == [("A", "DP01", None)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[{"PackageID": "A", "PkgServer": "DP01", "Status": "3", "Type": 2}, 7]',
            "object at index 1: not a JSON object",
        ),
        ('[{"PackageID": "A", "PkgServer": "DP01", "Status": 3.5, "Type": 2}]', "object at index 0: Status is neither"),
        (
            '[{"PackageID": "A", "PkgServer": "DP01", "Status": 3, "Type": 2, "UpdateTime": "soon"}]',
            "index 0: UpdateTime",
        ),
        ('[{"PackageID": "A", "PkgServer": "DP01", "Type": 2}]', "object at index 0: Status is missing"),
        ('[{"PackageID": "A", "Status": 3, "Type": 2', "not valid JSON"),
        ('"just a string"', "expected a JSON array or object"),
    ],
)
def test_bad_json_fails_the_poll(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    error = poll_error(path)
    assert error.reason == "parse"
    assert message in str(error)


# --- reading the file -----------------------------------------------------------------------


def test_missing_file_is_other_and_names_the_path(tmp_path: Path) -> None:
    error = poll_error(tmp_path / "nowhere.csv")
    assert error.reason == "other"
    assert str(error) == f"{tmp_path / 'nowhere.csv'}: file not found"


def test_directory_instead_of_file_is_other(tmp_path: Path) -> None:
    error = poll_error(tmp_path)
    assert error.reason == "other"
    assert str(tmp_path) in str(error)


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf\r\n", b"\xff\xfe"])
def test_empty_file_fails_rather_than_empty_the_table(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    error = poll_error(path)
    assert (error.reason, str(error)) == ("parse", f"{path}: file is empty")


@pytest.mark.parametrize("data", [b'"PackageID"\r\n"\xff\xfe\xfa"', b"\xff\xfe[\x00]"])
def test_undecodable_bytes_are_parse_errors(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    error = poll_error(path)
    assert error.reason == "parse"
    assert "not UTF-8 or UTF-16 with a BOM" in str(error)


def test_file_is_read_again_on_every_poll(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    source = FileSource(target(path))
    path.write_text('[{"PackageID": "A", "PkgServer": "DP01", "Status": 2, "Type": 2, "SiteCode": "ABC"}]')
    assert [r.status for r in collector_rows(source, "package_status", time.monotonic() + 60)] == [2]
    path.write_text('[{"PackageID": "A", "PkgServer": "DP01", "Status": 3, "Type": 2, "SiteCode": "ABC"}]')
    assert [r.status for r in collector_rows(source, "package_status", time.monotonic() + 60)] == [3]


def test_duplicate_rows_are_passed_through(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    one = '{"PackageID": "A", "PkgServer": "DP01", "Status": 3, "Type": 2}'
    path.write_text(f"[{one}, {one}]")
    assert len(poll(path)) == 2


def test_passed_deadline_is_a_timeout(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('[{"PackageID": "A", "PkgServer": "DP01", "Status": 3, "Type": 2}]')
    with pytest.raises(PollError) as caught:
        read_items(path, time.monotonic() - 1)
    assert caught.value.reason == "timeout"


# --- site_code ------------------------------------------------------------------------------


def test_site_code_from_rows_else_configured_else_none(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    source = FileSource(target(path, site_code="CFG"))
    assert source.site_code() == "CFG"  # before any poll
    path.write_text('[{"PackageID": "A", "PkgServer": "DP01", "Status": 3, "Type": 2, "SiteCode": "ABC"}]')
    list(collector_rows(source, "package_status", time.monotonic() + 60))
    assert source.site_code() == "ABC"
    path.write_text(
        '[{"PackageID": "A", "PkgServer": "DP01", "Status": 3, "Type": 2, "SiteCode": "ABC"},'
        ' {"PackageID": "B", "PkgServer": "DP01", "Status": 3, "Type": 2, "SiteCode": "DEF"}]'
    )
    list(collector_rows(source, "package_status", time.monotonic() + 60))
    assert source.site_code() == "CFG"  # rows disagree (a CAS export): the configured one
    unconfigured = FileSource(target(path))
    list(collector_rows(unconfigured, "package_status", time.monotonic() + 60))
    assert unconfigured.site_code() is None


def test_path_is_required() -> None:
    with pytest.raises(ValueError, match="needs a path"):
        FileSource(TargetConfig(name="x", source="file", interval=1, timeout=1, per_row="all", stale_after=1))


def test_semicolons_after_a_type_line(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "#TYPE Selected.Microsoft.Management.Infrastructure.CimInstance\r\n"
        '"PackageID";"PkgServer";"Status";"Type"\r\n'
        '"A";"DP01";"3";"2"\r\n'
    )
    assert [(r.package_id, r.server, r.status, r.type) for r in poll(path)] == [("A", "DP01", 3, 2)]
