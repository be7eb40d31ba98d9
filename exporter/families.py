"""The text exposition format as every collector writes it: family headers, escaping, values.

Collectors render their sample lines once per poll into `Exposition`s (bytes, and splice-ready
deflate: `exporter.gzipsplice`); `exporter.exposition` joins the targets' pieces under one HELP
and TYPE header per family. Nothing here keeps state between calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from exporter.gzipsplice import Piece, piece

PerRow = Literal["all", "not_installed", "none"]
"""Which rows the per-row families export one by one (the `per_row` setting)."""

# Lines per encoded chunk: big enough to be cheap, small enough that a render of two million
# lines never holds them all as separate strings.
CHUNK_LINES = 20_000


@dataclass(frozen=True)
class Family:
    name: str
    type: str
    help: str

    def header(self) -> str:
        return f"# HELP {self.name} {escape_help(self.help)}\n# TYPE {self.name} {self.type}\n"


def escape_label_value(value: str) -> str:
    """Escape a label value for the text exposition format (backslash, double quote, newline)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: integers without a fraction, floats round-trip exact."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def cached(fn: Callable[[str], str]) -> Callable[[str], str]:
    """Memoise an escaping function over one render: a site repeats a few thousand strings."""
    cache: dict[str, str] = {}

    def lookup(value: str) -> str:
        found = cache.get(value)
        if found is None:
            found = cache[value] = fn(value)
        return found

    return lookup


def complete(counts: Mapping[int, int], known: Iterable[int]) -> Iterator[tuple[int, int]]:
    """(value, count) for every known enum value (0 where none), then the unknown ones that occur.

    Count families list every known value so that a dashboard shows 0, not "no data", and an
    alert on a rise from 0 works from the first sample.
    """
    known = tuple(known)
    for value in known:
        yield value, counts.get(value, 0)
    for value, count in counts.items():
        if value not in known:
            yield value, count


def exported_one_by_one(per_row: PerRow, installed: bool) -> bool:
    """Whether `per_row` exports a row in the per-row families: all rows, those not installed, none.

    The count families are complete whatever it says.
    """
    return per_row == "all" or (per_row == "not_installed" and not installed)


def lines_piece(lines: Iterable[str]) -> Piece:
    """Sample lines as one family's piece, encoded a chunk at a time."""
    chunks: list[bytes] = []
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= CHUNK_LINES:
            chunks.append("".join(batch).encode())
            batch.clear()
    chunks.append("".join(batch).encode())
    return piece(chunks)


def count_lines(family: Piece) -> int:
    return sum(chunk.count(b"\n") for chunk in family.chunks)


@dataclass(frozen=True)
class Exposition:
    """The sample lines of one collector's data families for one target, keyed by family name.

    Built once per poll by the collector's aggregate; HELP and TYPE lines are added when targets
    are joined, so that several targets share one header per family.
    """

    families: Mapping[str, Piece]
    rows: int  # distinct rows after de-duplication
    series: int

    @classmethod
    def of(cls, families: Mapping[str, Piece], rows: int) -> Exposition:
        return cls(families, rows, sum(count_lines(family) for family in families.values()))

    @property
    def samples(self) -> dict[str, str]:
        """Each family's sample lines as text (for tests; scrapes send bytes)."""
        return {name: family.text for name, family in self.families.items()}
