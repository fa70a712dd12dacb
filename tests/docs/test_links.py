"""The pages' relative links point at files that exist, and their #anchors at headings of the target
page (GitHub's slugs), so a moved section or a renamed page fails `make check`."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted({*PROJECT_ROOT.glob("docs/*.md"), PROJECT_ROOT / "README.md", PROJECT_ROOT / "bench" / "README.md"})
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside code blocks."""
    lines, inside = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
        elif not inside:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for _, line in prose(path) if re.match(r"^#{1,6} ", line)}


def test_slug_follows_github() -> None:
    assert slug("Break glass: a playbook without Airflow") == "break-glass-a-playbook-without-airflow"
    assert slug("Mapping, dedup, storms and escalation") == "mapping-dedup-storms-and-escalation"
    assert slug("`version`, `product`, `timezone`") == "version-product-timezone"


def test_relative_links_resolve() -> None:
    broken = []
    for page in PAGES:
        for number, line in prose(page):
            for match in LINK.finditer(line):
                target = match["target"]
                if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                    continue
                file_part, _, anchor = target.partition("#")
                destination = (page.parent / file_part).resolve() if file_part else page
                where = f"{page.relative_to(PROJECT_ROOT)}:{number}: {target}"
                if not destination.exists():
                    broken.append(f"{where} (no such file)")
                elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                    broken.append(f"{where} (no heading with that anchor)")
    assert not broken, "broken links:\n  " + "\n  ".join(broken)
