#!/usr/bin/env python3
"""Checks that every relative link and image in the Markdown files of docs/ (and the top-level README.md) points at
a file or folder that exists, and that a link's #anchor names a heading of the target page; and that no page holds a
control character (a tab, vertical tab, form feed, backspace or carriage return is what a LaTeX command such as
\text, \varepsilon, \frac, \beta or \rho becomes when a string escape eats its backslash). Fast (no network):
external links (http, https, mailto) are not followed. Exits 1 with one line per problem."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~)")


def anchors(page: Path) -> set:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen, result = {}, set()
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        if in_fence or not line.startswith("#"):
            continue
        text = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        result.add(slug if n == 0 else f"{slug}-{n}")
    return result


def links(page: Path):
    in_fence = False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        # Inline code spans are not links.
        line = re.sub(r"`[^`]*`", "", line)
        for match in LINK.finditer(line):
            yield number, match.group(1)


CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def control_characters(page: Path):
    for number, line in enumerate(page.read_text(encoding="utf-8").split("\n"), 1):
        for match in CONTROL.finditer(line):
            yield number, match.start() + 1, repr(match.group(0))


def main() -> int:
    pages = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
    broken = []
    for page in pages:
        for number, column, char in control_characters(page):
            broken.append(
                f"{page.relative_to(ROOT)}:{number}:{column}: control character {char} "
                "(a LaTeX backslash eaten by a string escape? write the backslash twice or use a raw string)"
            )
        for number, target in links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue
            path_part, _, anchor = target.partition("#")
            resolved = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(ROOT)}:{number}"
            if not resolved.exists():
                broken.append(f"{where}: {target} does not exist")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{where}: {target}: no heading with anchor #{anchor}")
    for line in broken:
        print(line)
    print(f"checked {len(pages)} pages: {len(broken)} problems")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
