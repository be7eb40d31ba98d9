"""The shared field conversions of exporter/rows.py: datetimes, NAL paths, enums, make_row, item fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from exporter import wmi
from exporter.collectors.package_status.row import (
    PERSONALITY_NAMES,
    STATUS_NAMES,
    TYPE_NAMES,
    PackageStatusRow,
    make_row,
    parse_personality,
    parse_status,
    parse_type,
)
from exporter.rows import RowError, enum_label, host_from_nal, item_text, parse_bool, parse_datetime, parse_int

T = datetime(2024, 5, 1, 10, 22, 33, tzinfo=UTC).timestamp()  # 1714558953


# --- datetimes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # xs:dateTime as WS-Management sends it, 0 to 7 fraction digits (.NET writes 7).
        ("2024-05-01T10:22:33Z", T),
        ("2024-05-01T10:22:33.5Z", T + 0.5),
        ("2024-05-01T10:22:33.25Z", T + 0.25),
        ("2024-05-01T10:22:33.125Z", T + 0.125),
        ("2024-05-01T10:22:33.0625Z", T + 0.0625),
        ("2024-05-01T10:22:33.03125Z", T + 0.03125),
        ("2024-05-01T10:22:33.488171Z", T + 0.488171),
        ("2024-05-01T10:22:33.1234567Z", T + 0.1234567),
        ("2024-05-01T12:22:33+02:00", T),
        ("2024-05-01T05:22:33-05:00", T),
        ("2024-05-01T04:52:33.5-05:30", T + 0.5),
        ("2024-05-01T10:22:33", T),  # no offset: read as UTC
        ("1969-12-31T23:59:59.5Z", -0.5),
        # DMTF: yyyymmddHHMMSS.mmmmmm and the offset in minutes with its sign.
        ("20240501102233.000000+000", T),
        ("20240501112233.000000+060", T),
        ("20240501052233.250000-300", T + 0.25),
        ("20240501155233.000000+330", T),
        # /Date(ms)/ from Windows PowerShell 5.1 ConvertTo-Json, escaped or not.
        ("/Date(1714558953000)/", T),
        ("\\/Date(1714558953500)\\/", T + 0.5),
        ("/Date(1714558953000+0200)/", T),  # the milliseconds are UTC; the offset is a hint
        ("/Date(-1000)/", -1.0),
        # Surrounding whitespace, as in a hand-edited file.
        ("  2024-05-01T10:22:33Z\r\n", T),
    ],
)
def test_datetime_forms(text: str, seconds: float) -> None:
    assert parse_datetime(text) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize("text", [None, "", "   "])
def test_nil_and_empty_datetimes_are_none(text: str | None) -> None:
    assert parse_datetime(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "2024-05-01",
        "2024-05-01 10:22:33",  # not xs:dateTime; sources rewrite culture forms before this
        "2024-13-01T10:22:33Z",
        "2024-05-01T25:22:33Z",
        "2024-05-01T10:22:33+25:00",
        "20240501102233+000",
        "20241301102233.000000+000",
        "/Date(soon)/",
        "1714558953",
    ],
)
def test_garbage_datetimes_raise_row_error_naming_the_field(text: str) -> None:
    with pytest.raises(RowError, match="UpdateTime"):
        parse_datetime(text)


# --- NAL paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host"),
    [
        (
            '["Display=\\\\DP01.corp.example.com\\"]MSWNET:["SMS_SITE=ABC"]\\\\DP01.corp.example.com\\',
            "DP01.corp.example.com",
        ),
        ('MSWNET:["SMS_SITE=ABC"]\\\\DP01.corp.example.com\\SMSPKGD$\\ABC00012\\', "DP01.corp.example.com"),
        ('["Display=\\\\DP02\\"]', "DP02"),
        ("\\\\DP03.corp.example.com\\SMSPKGD$\\ABC00012", "DP03.corp.example.com"),
        ("DP04.corp.example.com", "DP04.corp.example.com"),
        ("  dp05  ", "dp05"),
        # Case is kept and the name is not shortened: the `server` label is exactly as written.
        ('MSWNET:["SMS_SITE=ABC"]\\\\Dp06.CORP.Example.com\\', "Dp06.CORP.Example.com"),
    ],
)
def test_host_from_nal(value: str, host: str) -> None:
    assert host_from_nal(value) == host


# --- enums ----------------------------------------------------------------------------------


def test_enum_numbers_and_names() -> None:
    assert [parse_status(str(n)) for n in range(8)] == list(range(8))
    assert parse_status("Installed") == 3
    assert parse_status("PENDING_REMOVE") == parse_status("Pending Remove") == 7
    assert parse_type("MASTER") == 1
    assert parse_type(" 2 ") == 2
    assert parse_personality("FPNW") == 2


def test_unknown_enum_values_are_kept_as_numbers() -> None:
    assert parse_status("9") == 9
    assert parse_type("3") == 3
    assert parse_personality("-1") == -1
    assert enum_label(9, STATUS_NAMES) == "9"
    assert enum_label(3, TYPE_NAMES) == "3"
    assert enum_label(2, PERSONALITY_NAMES) == "fpnw"


def test_absent_personality_is_none() -> None:
    assert parse_personality(None) == parse_personality("") == 0


@pytest.mark.parametrize(("parse", "field"), [(parse_status, "Status"), (parse_type, "Type")])
def test_bad_enums_raise_row_error_naming_the_field(parse: object, field: str) -> None:
    assert callable(parse)
    with pytest.raises(RowError, match=f"{field} is missing"):
        parse(None)
    with pytest.raises(RowError, match=f"{field} is not a number or a known name: 'Installing'"):
        parse("Installing")
    with pytest.raises(RowError, match=field):
        parse("3.0")


# --- make_row -------------------------------------------------------------------------------


def test_make_row() -> None:
    nal = '["Display=\\\\DP01.corp.example.com\\"]MSWNET:["SMS_SITE=ABC"]\\\\DP01.corp.example.com\\'
    row = make_row(
        site=" ABC ",
        package_id="ABC00012",
        pkg_server=nal,
        type_="2",
        status="3",
        personality=None,
        update_time="20240501102233.000000+000",
    )
    assert row == PackageStatusRow("ABC", "ABC00012", "DP01.corp.example.com", 2, 3, 0, T, nal)
    assert row.key == ("ABC", "ABC00012", "DP01.corp.example.com", 2, 3, 0)


@pytest.mark.parametrize(("package_id", "pkg_server", "message"), [("", "DP01", "PackageID"), ("A", None, "PkgServer")])
def test_make_row_missing_key_fields(package_id: str, pkg_server: str | None, message: str) -> None:
    with pytest.raises(RowError, match=message):
        make_row(
            site="ABC",
            package_id=package_id,
            pkg_server=pkg_server,
            type_="2",
            status="3",
            personality="0",
            update_time=None,
        )


# --- item fields (the optional collectors' properties, as pages.parse_items gives them) -------


def test_item_text_gives_the_text_or_none_for_nil_and_absent_properties() -> None:
    item: wmi.Item = {"Name": " Office 365 ", "Version": "", "Nil": None}
    assert item_text(item, "Name") == " Office 365 "  # as sent: callers strip what they need to
    assert item_text(item, "Version") == ""
    assert item_text(item, "Nil") is None
    assert item_text(item, "Absent") is None


def test_item_text_refuses_a_repeated_element_naming_the_property() -> None:
    with pytest.raises(RowError, match="GroupCount has 2 values where one was expected"):
        item_text({"GroupCount": ["1", None]}, "GroupCount")


@pytest.mark.parametrize(
    ("text", "number"),
    [("0", 0), ("42", 42), (" 42\r\n", 42), ("-1", -1), ("4294967296", 2**32), ("18446744073709551615", 2**64 - 1)],
)
def test_parse_int_reads_wmi_integers_of_any_width(text: str, number: int) -> None:
    assert parse_int("PackageSize", text) == number


@pytest.mark.parametrize("text", [None, "", "   "])
def test_parse_int_is_none_for_nil_and_empty(text: str | None) -> None:
    assert parse_int("PackageSize", text) is None


@pytest.mark.parametrize("text", ["1.5", "1e3", "0x10", "ten", "12 KB"])
def test_parse_int_refuses_anything_else_naming_the_field_and_value(text: str) -> None:
    with pytest.raises(RowError, match=f"PackageSize is not a number: {re.escape(repr(text))}"):
        parse_int("PackageSize", text)


def test_parse_int_cuts_a_long_bad_value_short_in_its_message() -> None:
    with pytest.raises(RowError) as caught:
        parse_int("SourceVersion", "x" * 500)
    assert str(caught.value) == f"SourceVersion is not a number: {'x' * 40!r}"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True), ("false", False),  # WS-Management (xs:boolean)
        ("True", True), ("False", False),  # PowerShell exports
        ("TRUE", True), (" false\r\n", False),
        ("1", True), ("0", False),  # xs:boolean allows the digits too
        (None, False), ("", False),  # nil: the flag is not set
    ],
)
def test_parse_bool_forms(text: str | None, value: bool) -> None:
    assert parse_bool("IsPXE", text) is value


@pytest.mark.parametrize("text", ["yes", "2", "on", "truee"])
def test_parse_bool_refuses_anything_else_naming_the_field(text: str) -> None:
    with pytest.raises(RowError, match=f"IsPXE is not a boolean: {re.escape(repr(text))}"):
        parse_bool("IsPXE", text)


def test_parse_datetime_names_the_field_it_is_given() -> None:
    with pytest.raises(RowError, match="SourceDate is not a datetime"):
        parse_datetime("yesterday", "SourceDate")
    with pytest.raises(RowError, match="LastCopied is not a valid date"):
        parse_datetime("2024-02-30T10:22:33Z", "LastCopied")
