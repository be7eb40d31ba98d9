"""The fast page reader (exporter/collectors/package_status/pages.py) against the general one:
the same rows or the same error.

`pages.split_page` + `PageReader.rows` must give exactly what `pages.parse_page` + `parse_item`
give, for every reply: pages the test server renders from random rows, the Windows-like fixtures,
and pages mutated in ways a regex reader could get wrong (references, line ends, comments,
CDATA, whitespace, other prefixes). Where the fast way cannot be sure it must hand the page to
the general reader, and on ordinary pages it must really take the fast way.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import status_rows
from datasets import make_site, make_site_classes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsman_server import ACTION_PULL, CimDatetime, envelope, pull_body, render_fragment

from exporter import wmi
from exporter.collectors.package_status.pages import PageReader
from exporter.collectors.package_status.row import PackageStatusRow
from exporter.errors import PollError
from exporter.winrm import pages

FIXTURES = Path(__file__).parent / "fixtures" / "wsman"
PROPERTIES = ("PackageID", "Personality", "PkgServer", "SiteCode", "Status", "Type", "UpdateTime")
Outcome = list[PackageStatusRow] | tuple[str, str]


def page(rows: list[dict[str, Any]], *, last: bool = False) -> str:
    items = [render_fragment(PROPERTIES, row) for row in rows]
    return envelope(ACTION_PULL + "Response", "uuid:1", pull_body(None if last else "uuid:CTX", items, last))


def general(text: str | bytes, site: str = "ABC") -> Outcome:
    try:
        return status_rows(pages.parse_page(text), site)
    except PollError as error:
        return (error.reason, str(error))


def fast(text: str | bytes, site: str = "ABC", reader: PageReader | None = None) -> Outcome:
    try:
        return status_rows(pages.split_page(text), site, reader or PageReader(site))
    except PollError as error:
        return (error.reason, str(error))


def read_fast(text: str | bytes) -> tuple[Outcome, PageReader]:
    reader = PageReader("ABC")
    return fast(text, reader=reader), reader


def test_pages_of_a_generated_site_are_read_the_fast_way_with_the_same_rows() -> None:
    rows = make_site("ABC", 60, 9, 5)  # NAL, UNC and bare PkgServer, nil times, status 9
    text = page(rows)
    got, reader = read_fast(text)
    assert (reader.fast_pages, reader.general_pages) == (1, 0)
    assert got == general(text) and len(got) == len(rows)


@pytest.mark.parametrize(
    "name",
    ["pull_page_xmlfragment.xml", "pull_last_page_end_of_sequence.xml", "enumerate_response_optimized_one_item.xml",
     "pull_page_select_star.xml"],
)
def test_fixtures_read_the_same_way(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    assert fast(data) == general(data)


def test_windows_fixture_with_declarations_on_each_fragment_and_newlines_takes_the_fast_way() -> None:
    got, reader = read_fast((FIXTURES / "pull_page_xmlfragment.xml").read_bytes())
    assert reader.fast_pages == 1 and len(got) == 3


def test_the_reader_remembers_repeated_runs_between_pages() -> None:
    rows = make_site("ABC", 30, 4, 2)
    reader = PageReader("ABC")
    first = fast(page(rows[:50]), reader=reader)
    second = fast(page(rows[50:]), reader=reader)
    assert isinstance(first, list) and isinstance(second, list)
    assert first + second == general(page(rows))
    assert reader.fast_pages == 2


# --- mutations that must send a page to the general reader (or give what it gives) -------------

BASE_ROW: dict[str, Any] = {
    "PackageID": "ABC00010",
    "Personality": 0,
    "PkgServer": '["Display=\\\\DP01.corp\\"]MSWNET:["SMS_SITE=ABC"]\\\\DP01.corp\\',
    "SiteCode": "ABC",
    "Status": 3,
    "Type": 2,
    "UpdateTime": datetime(2024, 5, 1, 10, 22, 33, 500000, tzinfo=UTC),
}
PLAIN = page([BASE_ROW, {**BASE_ROW, "PackageID": "ABC00011", "UpdateTime": None}])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ABC00010", "ABC&#48;0010"),  # a character reference in PackageID
        ("ABC00010", "ABC&amp;0010"),
        ("ABC00010", "ABC\r\n0010"),  # a line end the parser normalises
        ("ABC00010", "ABC\r0010"),
        ("ABC00010", "ABC\x010010"),  # not allowed in XML at all
        ("ABC00010", "ABC]]>0010"),  # not allowed in text either
        ("ABC00010", "ABC&bogus;0010"),  # an undefined entity
        ("ABC00010", "  ABC00010 "),  # stripped as the general reader strips it
        ("ABC00010", ""),  # PackageID missing
        ("DP01.corp", "DP01&amp;corp"),  # a reference in a remembered run: decoded by ElementTree
        ("DP01.corp", "DP01&#x22;corp"),
        ("DP01.corp", "DP01\r\ncorp"),
        ("DP01.corp", "DP01\x0bcorp"),
        ("DP01.corp", "DP01&nope;corp"),
        ("<Status>3</Status>", "<Status>broken</Status>"),  # a field that does not convert
        ("<Status>3</Status>", "<Status>Installed</Status>"),  # a name the general reader accepts
        ("<Status>3</Status>", '<Status xsi:nil="true"/>'),
        ("<Personality>0</Personality>", '<Personality xsi:nil="true"/>'),
        ("<SiteCode>ABC</SiteCode>", "<SiteCode></SiteCode>"),  # the target's site stands in
        ("<SiteCode>ABC</SiteCode>", "<SiteCode> </SiteCode>"),
        ("<Type>2</Type>", "<Type>2</Type><Location>x</Location>"),  # a property not asked for
        ("<Type>2</Type>", "<Type>2</Type><Type>1</Type>"),  # a property twice
        ("2024-05-01T10:22:33.5Z", "2024-13-01T10:22:33Z"),  # not a date
        ("2024-05-01T10:22:33.5Z", "2024-05-01T24:22:33Z"),
        ("2024-05-01T10:22:33.5Z", "2024-05-01T10:22:33.5+02:00"),
        ("2024-05-01T10:22:33.5Z", " 2024-05-01T10:22:33.5Z "),
        ("2024-05-01T10:22:33.5Z", ""),
        ("2024-05-01T10:22:33.5Z", "\u0662024-05-01T10:22:33Z"),  # an Arabic-Indic digit
        ("</w:XmlFragment><w:XmlFragment>", "</w:XmlFragment>\n  <w:XmlFragment>"),  # whitespace
        ("</w:XmlFragment><w:XmlFragment>", "</w:XmlFragment>junk<w:XmlFragment>"),
        ("</w:XmlFragment><w:XmlFragment>", "</w:XmlFragment><!-- c --><w:XmlFragment>"),
        ("</w:XmlFragment><w:XmlFragment>", "</w:XmlFragment><![CDATA[x]]><w:XmlFragment>"),
        ("</w:XmlFragment><w:XmlFragment>", "</w:XmlFragment><?pi x?><w:XmlFragment>"),
        ("<w:XmlFragment><PackageID>ABC00011", '<w:XmlFragment xml:lang="en"><PackageID>ABC00011'),
        ("<PackageID>ABC00010</PackageID>", "<PackageID>ABC00010</PackageID >"),
        ("<PackageID>ABC00010</PackageID>", "<PackageID><![CDATA[ABC00010]]></PackageID>"),
        ("<PackageID>ABC00010</PackageID>", "<PackageID>ABC<!--x-->00010</PackageID>"),
        ('<UpdateTime xsi:nil="true"/>', '<UpdateTime xsi:nil="false"/>'),
        ('<UpdateTime xsi:nil="true"/>', '<UpdateTime xsi:nil="true"></UpdateTime>'),
        ('<UpdateTime xsi:nil="true"/>', "<UpdateTime/>"),
        ('xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"', 'xmlns:xsi="urn:not-xsi"'),  # nil is no nil
        ('xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"',
         'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:q="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"'),
        ("<w:XmlFragment>", "<q:XmlFragment>"),  # an undeclared prefix: malformed
        ("n:Items>", "w:Items>"),
        ("<n:PullResponse>", "<n:PullResponse><n:Items></n:Items>"),  # two Items elements
        ("uuid:CTX", "uuid:CTX</n:EnumerationContext><n:Items/><n:EnumerationContext>x"),
    ],
)
def test_a_mutated_page_reads_as_the_general_reader_reads_it(old: str, new: str) -> None:
    assert old in PLAIN
    text = PLAIN.replace(old, new)
    assert fast(text) == general(text)


def test_a_fragment_redeclaring_w_elsewhere_is_not_trusted() -> None:
    text = PLAIN.replace("<w:XmlFragment>", '<w:XmlFragment xmlns:w="urn:other">')
    assert fast(text) == general(text)


def test_a_default_namespace_on_the_fragments_changes_nothing() -> None:
    text = PLAIN.replace("<w:XmlFragment>", '<w:XmlFragment xmlns="urn:x">')
    got, reader = read_fast(text)
    assert got == general(text) and reader.fast_pages == 1


def test_pages_that_are_no_pages_give_the_same_errors() -> None:
    for name in ("fault_timed_out.xml", "malformed.xml", "xml_bomb.xml", "external_entity.xml"):
        data = (FIXTURES / name).read_bytes()
        assert fast(data) == general(data), name
        assert isinstance(fast(data), tuple)


def test_the_reply_must_relate_to_the_request_sent() -> None:
    data = (FIXTURES / "pull_page_xmlfragment.xml").read_bytes()
    assert pages.split_page(data, message_id="uuid:0a6b2c31-8e47-4f0b-b1c8-6a9d52e0f003").items is None
    with pytest.raises(PollError, match="relates to another request"):
        pages.split_page(data, message_id="uuid:0A6B2C31-8E47-4F0B-B1C8-6A9D52E0F999")


def test_an_empty_page_and_the_sequence_fields() -> None:
    text = page([], last=True)
    raw = pages.split_page(text)
    assert raw.done and raw.end_of_sequence and raw.context is None
    assert fast(text) == general(text) == []
    middle = pages.split_page(page([BASE_ROW]))
    assert middle.context == "uuid:CTX" and not middle.done and middle.count == 1


# --- random rows, rendered by the test server --------------------------------------------------

_TEXT = st.lists(st.sampled_from([*"AB0é &<>\"'\\[]=:;\r\n\t\x01?", "]]>", "&amp;"]), max_size=12).map("".join)
_ENUM = st.one_of(st.integers(-3, 12), st.sampled_from(["Installed", "COPY", "none", " 2 ", "", "x"]))
_OFFSETS = st.sampled_from([timedelta(0), timedelta(hours=2), timedelta(hours=-5, minutes=-30)])


@st.composite
def _update_time(draw: st.DrawFn) -> object:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return None
    if kind == 3:
        return CimDatetime(draw(st.sampled_from(
            ["2024-05-01T10:22:33.1234567", "2024-05-01T10:22:33.5Z", "20240501102233.000000+060", "x", "",
             "2024-02-30T00:00:00Z", "1969-12-31T23:59:59.25Z"])))
    moment = draw(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1)))
    return moment.replace(tzinfo=timezone(draw(_OFFSETS)))


@st.composite
def _row(draw: st.DrawFn) -> dict[str, Any]:
    host = draw(st.sampled_from(["DP01.corp", "dp02", "CM-ABC.corp.example.com"]))
    return {
        "PackageID": draw(st.one_of(st.sampled_from(["ABC00010", "ABC0001F", "P1"]), _TEXT)),
        "Personality": draw(st.one_of(st.sampled_from([0, 0, 2]), st.none(), _ENUM)),
        "PkgServer": draw(st.one_of(
            st.sampled_from([f'["Display=\\\\{host}\\"]MSWNET:["SMS_SITE=ABC"]\\\\{host}\\', f"\\\\{host}\\", host]),
            _TEXT)),
        "SiteCode": draw(st.one_of(st.sampled_from(["ABC", "DEF"]), _TEXT)),
        "Status": draw(st.one_of(st.integers(0, 9), _ENUM)),
        "Type": draw(st.one_of(st.sampled_from([1, 2]), _ENUM)),
        "UpdateTime": draw(_update_time()),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row(), max_size=6))
def test_random_rows_read_the_same_both_ways(rows: list[dict[str, Any]]) -> None:
    text = page(rows)
    assert fast(text) == general(text)
    assert fast(text.encode("utf-8")) == general(text.encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False))
def test_randomly_cut_and_spliced_pages_read_the_same_both_ways(rng: random.Random) -> None:
    pieces = ["<", ">", "&", "&amp;", "/", "\r", " ", '"', "]]>", "<!--x-->", "xsi:nil", "w:", "</w:XmlFragment>"]
    text = PLAIN
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(text))
        cut = rng.randint(0, 3)
        text = text[:at] + rng.choice(pieces) + text[at + cut :]
    assert fast(text) == general(text)


# --- FragmentReader: any property list (the optional collectors' classes) -----------------------

SUMMARIZER = ("PackageID", "ServerNALPath", "SiteCode", "State", "PackageType", "SourceVersion", "LastCopied",
              "SummaryDate")
SUMMARY_ROW = {
    "PackageID": "ABC00010",
    "ServerNALPath": '["Display=\\\\DP01.corp\\"]MSWNET:["SMS_SITE=ABC"]\\\\DP01.corp\\',
    "SiteCode": "ABC",
    "State": 0,
    "PackageType": 0,
    "SourceVersion": 3,
    "LastCopied": datetime(2024, 5, 1, 10, 22, 33, 500000, tzinfo=UTC),
    "SummaryDate": None,
}


def summary_page(rows: list[dict[str, Any]]) -> str:
    items = [render_fragment(sorted(SUMMARIZER, key=str.lower), row) for row in rows]
    return envelope(ACTION_PULL + "Response", "uuid:1", pull_body("uuid:CTX", items, False))


SUMMARY = summary_page([SUMMARY_ROW, {**SUMMARY_ROW, "PackageID": "ABC00011", "State": 3, "LastCopied": None}])


def fragments(text: str) -> list[wmi.Item] | tuple[str, str] | None:
    """What FragmentReader reads of a page: its items, None (not its shape), or the page's error."""
    try:
        raw = pages.split_page(text)
        return raw.items if raw.wire is None else pages.FragmentReader(SUMMARIZER).items(raw.wire)
    except PollError as error:
        return (error.reason, str(error))


def parsed(text: str) -> list[wmi.Item] | tuple[str, str]:
    try:
        return pages.parse_page(text).items or []
    except PollError as error:
        return (error.reason, str(error))


def test_summarizer_pages_of_the_data_set_are_read_the_fast_way_with_the_same_items() -> None:
    classes = make_site_classes("ABC", 40, 6, 3)
    text = summary_page(classes["SMS_PackageStatusDistPointsSummarizer"])
    items = fragments(text)
    assert isinstance(items, list) and len(items) > 40
    assert items == parsed(text)


@pytest.mark.parametrize(
    ("old", "new", "fast_way"),
    [
        ("ABC00010", "ABC00010 ", True),  # text as written, spaces kept as the general reader keeps them
        ("<SiteCode>ABC</SiteCode>", "<SiteCode></SiteCode>", True),  # empty text is "", not nil
        ("ABC00010", "ABC&amp;0010", False),  # a reference: the general reader decodes it
        ("ABC00010", "ABC\r\n0010", False),  # a line end it would normalise
        ("ABC00010", "ABC<!--x-->0010", False),
        ("ABC00010", "<![CDATA[ABC00010]]>", False),
        ("<SiteCode>ABC</SiteCode><SourceVersion>3</SourceVersion>",
         "<SourceVersion>3</SourceVersion><SiteCode>ABC</SiteCode>", False),  # another order
        ("<SiteCode>ABC</SiteCode>", "", False),  # a property missing
        ("<State>0</State>", "<State>0</State><Extra>1</Extra>", False),  # one not asked for
        ('<SummaryDate xsi:nil="true"/>', "<SummaryDate/>", False),
        ("</w:XmlFragment><w:XmlFragment>", "</w:XmlFragment>\n <w:XmlFragment>", True),
        ("</w:XmlFragment><w:XmlFragment>", "</w:XmlFragment>junk<w:XmlFragment>", False),
        ('xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"', 'xmlns:xsi="urn:not-xsi"', False),
    ],
)
def test_a_mutated_summarizer_page_is_read_the_same_or_handed_to_the_general_reader(
    old: str, new: str, fast_way: bool
) -> None:
    assert old in SUMMARY
    text = SUMMARY.replace(old, new)
    got, want = fragments(text), parsed(text)
    if fast_way:
        assert got == want
    else:
        assert got is None or got == want


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False))
def test_randomly_cut_and_spliced_summarizer_pages_never_read_differently(rng: random.Random) -> None:
    pieces = ["<", ">", "&", "&amp;", "/", "\r", " ", '"', "]]>", "<!--x-->", "xsi:nil", "w:", "</w:XmlFragment>",
              "<Datetime>", "</State>"]
    text = SUMMARY
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(text))
        cut = rng.randint(0, 3)
        text = text[:at] + rng.choice(pieces) + text[at + cut :]
    got, want = fragments(text), parsed(text)
    assert got is None or got == want
