"""Every relative link of README.md and docs/*.md leads somewhere: the file or folder exists, and an anchor
(``page.md#section`` or ``#section``) is a heading of that page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.markdown_pages import ROOT, anchors, pages, slug, split_fences

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`[^`]*`")


def relative_links(page: Path) -> list[str]:
    """The link targets of a page's prose (not of code blocks or inline code), web and mail links left out."""
    prose, _ = split_fences(page.read_text())
    text = INLINE_CODE.sub("", "\n".join(line for _, line in prose))  # a span may wrap onto the next line
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def broken(page: Path) -> list[str]:
    out = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            out.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            out.append(f"{target}: {dest.name} has no heading #{anchor}")
    return out


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken(page) == []


def test_the_front_page_links_every_reference_page():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links(ROOT / "README.md")}
    assert [p.name for p in pages()[1:] if p.resolve() not in linked] == []


def test_anchors_follow_githubs_rule():
    assert slug("The verdict on patients never seen: `--folds K`") == "the-verdict-on-patients-never-seen---folds-k"
    assert slug("bf16 and channels-last: `train.precision`, `train.memory_format`") == (
        "bf16-and-channels-last-trainprecision-trainmemory_format")
    assert slug("From an echo lab's DICOMs to frames to label") == "from-an-echo-labs-dicoms-to-frames-to-label"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Here\n")
    page.write_text("[ok](other.md#here) [file](gone.md) [anchor](other.md#there) [self](#page) `[code](x.md)`\n"
                    "# Page\n[web](https://example.org/x.md)\n```\n[code](y.md)\n```\n")
    assert broken(page) == ["gone.md: no such file", "other.md#there: other.md has no heading #there"]
