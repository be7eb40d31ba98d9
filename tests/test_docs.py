"""The documentation: a README that stays a front door, links that lead somewhere, and one runbook
per alert that the alert's runbook_url names.

Links are checked as GitHub renders them: a relative link must name a file of this checkout, and
its `#anchor` (or a same-page `#anchor`) a heading of that file, with GitHub's slugs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dashboard_model import (
    ALERTS,
    DOCS,
    ROOT,
    RUNBOOKS,
    alert_names,
    markdown_anchors,
    markdown_headings,
    rules,
    runbook_path,
)

README = ROOT / "README.md"
INDEX = DOCS / "README.md"
PAGES = sorted([README, ROOT / "CHANGELOG.md", *DOCS.rglob("*.md")])
README_MAX_LINES = 300

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def links(page: Path) -> list[str]:
    """Every link target of a Markdown page, outside code blocks and code spans."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))
    return _INLINE_LINK.findall(text) + _REFERENCE.findall(text)


def broken(page: Path, target: str, root: Path = ROOT) -> str | None:
    """Why a link of `page` leads nowhere, or None when it leads somewhere (in `root`)."""
    if _SCHEME.match(target):
        return None  # absolute: http(s), mailto
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    if not destination.is_relative_to(root):
        return "outside the repository"
    if not destination.exists():
        return "no such file"
    if anchor:
        if destination.suffix != ".md":
            return "an anchor into a file that is not Markdown"
        if anchor not in markdown_anchors(destination):
            return f"{destination.relative_to(root)} has no heading #{anchor}"
    return None


def test_the_readme_is_a_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    text = "\n".join(lines)
    # The quick start's two commands, exactly: CI (.ci/run) runs the README's test command.
    assert ("python3 -m venv .venv && .venv/bin/pip install . && "
            ".venv/bin/sccm-package-exporter --config.file examples/demo.yaml") in text
    assert "```sh\nbash scripts/test\n```" in text
    assert "bash scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_the_pages_exist_and_have_links() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "CHANGELOG.md", "docs/README.md", "docs/configuration.md", "docs/metrics.md",
            "docs/alerts.md", "docs/troubleshooting.md", "docs/architecture.md", "docs/platforms.md"} <= names
    assert all(links(p) for p in PAGES if p.parent != RUNBOOKS), "a page without a single link"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_leads_somewhere(page: Path) -> None:
    bad = [f"{target}: {why}" for target in links(page) if (why := broken(page, target))]
    assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def test_the_link_checker_finds_broken_links(tmp_path: Path) -> None:
    """The checker itself: a missing file, a missing heading, and what it must not count as links."""
    page = DOCS / "metrics.md"
    assert broken(page, "configuration.md#reload") is None
    assert broken(page, "#labels") is None
    assert broken(page, "../README.md") is None
    assert broken(page, "https://example.com/nowhere") is None
    assert broken(page, "configuration.md#no-such-heading") is not None
    assert broken(page, "no-such-page.md") is not None
    assert broken(page, "#no-such-heading") is not None
    assert broken(page, "../../outside.md") is not None
    probe = tmp_path / "probe.md"
    probe.write_text("# A `code` heading\n## Twice\n## Twice\n[ok](#a-code-heading) [again](#twice-1)\n"
                     "`[not a link](nowhere.md)`\n```\n[nor this](nowhere.md)\n```\n[bad](#twice-2)\n")
    assert links(probe) == ["#a-code-heading", "#twice-1", "#twice-2"]
    assert [t for t in links(probe) if broken(probe, t, tmp_path)] == ["#twice-2"]


def test_every_docs_page_is_in_the_index() -> None:
    listed = {(INDEX.parent / target.partition("#")[0]).resolve() for target in links(INDEX)}
    missing = [p.relative_to(ROOT).as_posix() for p in DOCS.rglob("*.md") if p != INDEX and p.resolve() not in listed]
    assert not missing, f"docs/README.md does not link {missing}"


def test_every_runbook_url_leads_to_its_runbook() -> None:
    for rule in rules(ALERTS):
        name, url = rule["alert"], rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert not _SCHEME.match(url), f"{name}: runbook_url is a path in the repository, not {url}"
        assert path == runbook_path(name), name
        runbook = ROOT / path
        assert runbook.parent == RUNBOOKS and runbook.is_file(), f"{name}: no runbook {url}"
        assert not anchor or anchor in markdown_anchors(runbook), f"{name}: {url} has no such heading"


def test_every_alert_has_exactly_one_runbook_and_every_runbook_an_alert() -> None:
    by_heading: dict[str, list[str]] = {}
    for runbook in sorted(RUNBOOKS.glob("*.md")):
        headings = markdown_headings(runbook)
        assert headings and headings[0][0] == 1, f"{runbook.name}: no top heading"
        by_heading.setdefault(headings[0][1], []).append(runbook.name)
    alerts = alert_names()
    assert len(alerts) == len(set(alerts))
    for name in alerts:
        assert len(by_heading.get(name, [])) == 1, f"{name}: runbooks {by_heading.get(name, [])}"
    assert set(by_heading) == set(alerts), f"runbooks of no alert: {set(by_heading) - set(alerts)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_docs_are_their_own_reference(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    # Spelled in pieces, so that the guard itself names none of them.
    for cited in ("../" + "shared", "shared/" + "spec", "design" + ".md"):
        assert cited not in text, f"{page.relative_to(ROOT)} cites {cited}"
