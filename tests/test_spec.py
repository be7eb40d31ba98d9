"""How any collector's classes are read from a source (exporter/collectors/spec.py).

A collector may read several classes (DP groups and their members, say): its rows come class after
class, each class converted by its own `parse_item`. A row that does not convert fails the read
naming the row, the one way every source's rows fail; a collector's own page reader is kept from
poll to poll and made again only when the site code changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any, ClassVar, NamedTuple

import pytest

from exporter.collectors.spec import ClassRead, CollectorSpec, Reader, page_rows
from exporter.errors import PollError
from exporter.families import Exposition, Family, PerRow
from exporter.rows import RowError, item_text
from exporter.wmi import Item, ItemsPage, Page, Query, WireItems

GROUPS = Query("SMS_DistributionPointGroup", ("GroupID", "Name"))
MEMBERS = Query("SMS_DPGroupMembers", ("GroupID", "DPNALPath"))


class Group(NamedTuple):
    group_id: str
    name: str


class Member(NamedTuple):
    group_id: str
    dp: str


def group(item: Item, site: str) -> Group:
    return Group(item_text(item, "GroupID") or "", item_text(item, "Name") or "")


def member(item: Item, site: str) -> Member:
    dp = item_text(item, "DPNALPath")
    if not dp:
        raise RowError("DPNALPath is missing")
    return Member(item_text(item, "GroupID") or "", dp)


class Groups:
    """An aggregate that takes the rows of both classes."""

    def __init__(self, per_row: PerRow) -> None:
        self.groups: list[Group] = []
        self.members: list[Member] = []

    @property
    def rows(self) -> int:
        return len(self.groups) + len(self.members)

    def add(self, rows: Iterable[Group | Member]) -> None:
        for row in rows:
            (self.groups if isinstance(row, Group) else self.members).append(row)  # type: ignore[arg-type]

    def render(self, target: str, own_site: str | None) -> Exposition:
        return Exposition.of({}, self.rows)


SPEC = CollectorSpec("dp_groups", (ClassRead(GROUPS, group), ClassRead(MEMBERS, member)),
                     (Family("sccm_dp_group_info", "gauge", "help"),), Groups)


def row_name(class_name: str, first: int, index: int) -> str:
    return f"{class_name} row {first + index + 1}"


class Provider:
    """A source answering each class with its instances, two per page; it counts what it was asked."""

    def __init__(self, classes: dict[str, list[Item]], site: str = "ABC") -> None:
        self.classes = classes
        self.site = site
        self.asked: list[Query] = []

    def read(self, query: Query, deadline: float) -> Iterator[Page]:
        self.asked.append(query)
        items = self.classes[query.class_name]
        for start in range(0, len(items), 2):
            yield ItemsPage(items[start:start + 2], partial(row_name, query.class_name, start))

    def site_code(self) -> str | None:
        return self.site

    def close(self) -> None:
        pass


def test_a_collector_reads_its_classes_in_order_each_with_its_own_conversion() -> None:
    provider = Provider({
        "SMS_DistributionPointGroup": [{"GroupID": "{G1}", "Name": "All DPs"}, {"GroupID": "{G2}", "Name": "PXE"}],
        "SMS_DPGroupMembers": [
            {"GroupID": "{G1}", "DPNALPath": "\\\\DP01"}, {"GroupID": "{G2}", "DPNALPath": "\\\\DP02"},
            {"GroupID": "{G1}", "DPNALPath": "\\\\DP02"},
        ],
    })
    aggregate = Groups("all")
    aggregate.add(Reader(SPEC).rows(provider, 0))
    assert aggregate.groups == [Group("{G1}", "All DPs"), Group("{G2}", "PXE")]
    assert aggregate.members == [Member("{G1}", "\\\\DP01"), Member("{G2}", "\\\\DP02"), Member("{G1}", "\\\\DP02")]
    assert provider.asked == [GROUPS, MEMBERS]
    assert SPEC.classes == "SMS_DistributionPointGroup and SMS_DPGroupMembers"


def test_a_row_that_does_not_convert_fails_the_read_naming_the_row_of_its_class() -> None:
    provider = Provider({
        "SMS_DistributionPointGroup": [{"GroupID": "{G1}", "Name": "All DPs"}],
        "SMS_DPGroupMembers": [
            {"GroupID": "{G1}", "DPNALPath": "\\\\DP01"}, {"GroupID": "{G1}", "DPNALPath": "\\\\DP02"},
            {"GroupID": "{G1}", "DPNALPath": None},
        ],
    })
    with pytest.raises(PollError) as caught:
        list(Reader(SPEC).rows(provider, 0))
    assert caught.value.reason == "parse"
    assert str(caught.value) == "SMS_DPGroupMembers row 3: DPNALPath is missing"


class Wire:
    """A page that came off the wire: its text for a collector's reader, its items otherwise."""

    def __init__(self, text: str, items: list[Item]) -> None:
        self.wire = WireItems(text, 0, len(text), "<w:XmlFragment>")
        self._items = items

    def items(self) -> list[Item]:
        return self._items

    def name(self, index: int) -> str:
        return f"SMS_DistributionPointGroup row {index + 1}"


class FastGroups:
    """A collector's own page reader: reads text it knows, gives None for anything else."""

    made: ClassVar[list[str]] = []

    def __init__(self, site: str) -> None:
        FastGroups.made.append(site)

    def rows(self, wire: WireItems) -> list[Any] | None:
        return [Group("{FAST}", wire.text)] if wire.text == "known" else None


def test_a_collectors_own_reader_reads_what_it_knows_and_hands_back_the_rest() -> None:
    fast = FastGroups("ABC")
    assert page_rows(Wire("known", []), group, "ABC", fast) == [Group("{FAST}", "known")]
    slow: list[Item] = [{"GroupID": "{G1}", "Name": "All DPs"}]
    assert page_rows(Wire("odd", slow), group, "ABC", fast) == [Group("{G1}", "All DPs")]
    assert page_rows(ItemsPage(slow, str), group, "ABC", fast) == [Group("{G1}", "All DPs")]


def test_a_collectors_own_reader_is_kept_from_poll_to_poll_until_the_site_changes() -> None:
    FastGroups.made = []
    spec = CollectorSpec("fast", (ClassRead(GROUPS, group, wire_reader=FastGroups),), (), Groups)
    provider = Provider({"SMS_DistributionPointGroup": [{"GroupID": "{G1}", "Name": "All DPs"}]})
    reader = Reader(spec)
    for _ in range(3):
        assert list(reader.rows(provider, 0)) == [Group("{G1}", "All DPs")]
    provider.site = "DEF"
    list(reader.rows(provider, 0))
    assert FastGroups.made == ["ABC", "DEF"]
