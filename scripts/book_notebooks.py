"""Write docs/book/NN_slug.ipynb from each chapter docs/book/NN_slug.py (jupytext "percent" format).

    python scripts/book_notebooks.py          # (re)write every notebook
    python scripts/book_notebooks.py --check  # exit 1 naming each notebook that differs from its chapter

The chapter is the source; its notebook is a build artefact (nbformat 4.5 JSON, no outputs),
written with the json module only, byte for byte the same for the same chapter. A cell starts at a
line ``# %% [markdown]`` (every line until the next marker is ``#`` or ``# text``: the text is the
markdown) or ``# %%`` (code, kept as written). Blank lines around a cell's content are dropped.
A malformed chapter stops with one ``error:`` line naming file and line (exit code 2).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "docs" / "book"
CHAPTER_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.py$")
MARKDOWN, CODE = "# %% [markdown]", "# %%"


class ChapterError(ValueError):
    pass


def chapters(book: Path = BOOK) -> list[Path]:
    """The chapter files of ``book``, in order: NN_slug.py."""
    return sorted(p for p in book.glob("*.py") if CHAPTER_NAME.match(p.name))


def parse_cells(text: str, name: str = "<chapter>") -> list[tuple[str, str]]:
    """[(cell_type, source)] of a percent-format chapter; cell_type is "markdown" or "code"."""
    cells: list[tuple[str, int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.rstrip()
        if stripped == MARKDOWN:
            cells.append(("markdown", number, []))
        elif stripped == CODE or stripped.startswith(CODE + " "):
            if stripped.startswith(CODE + " ["):
                raise ChapterError(f"{name}:{number}: unknown cell marker {stripped!r} "
                                   f"(use {MARKDOWN!r} or {CODE!r})")
            cells.append(("code", number, []))
        elif not cells:
            if stripped:
                raise ChapterError(f"{name}:{number}: text before the first cell marker "
                                   f"(a chapter starts with {MARKDOWN!r})")
        elif cells[-1][0] == "markdown":
            if stripped and stripped != "#" and not stripped.startswith("# "):
                raise ChapterError(f"{name}:{number}: a markdown cell line must be '#' or start with '# ', "
                                   f"got {stripped[:40]!r}")
            cells[-1][2].append(stripped[2:] if stripped.startswith("# ") else "")
        else:
            cells[-1][2].append(stripped)
    if not cells:
        raise ChapterError(f"{name}: no cells (a chapter starts with {MARKDOWN!r})")
    out = []
    for kind, number, lines in cells:
        source = "\n".join(lines).strip("\n")
        if not source.strip():
            raise ChapterError(f"{name}:{number}: empty {kind} cell")
        out.append((kind, source))
    return out


def notebook_json(cells: list[tuple[str, str]]) -> str:
    """The nbformat 4.5 document of ``cells`` as text: sorted keys, one-space indent, ids cell-0, cell-1..."""
    nb_cells = []
    for i, (kind, source) in enumerate(cells):
        cell = {"cell_type": kind, "id": f"cell-{i}", "metadata": {},
                "source": source.splitlines(keepends=True)}
        if kind == "code":
            cell |= {"execution_count": None, "outputs": []}
        nb_cells.append(cell)
    notebook = {"cells": nb_cells,
                "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                             "language_info": {"name": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def notebook_of(chapter: Path) -> str:
    return notebook_json(parse_cells(chapter.read_text(encoding="utf-8"), chapter.name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook is stale")
    parser.add_argument("--book", type=Path, default=BOOK, help="the book folder (default docs/book)")
    args = parser.parse_args(argv)
    try:
        wanted = {p.with_suffix(".ipynb"): notebook_of(p) for p in chapters(args.book)}  # all parsed before any write
    except ChapterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stale = [nb for nb, text in wanted.items()
             if not nb.is_file() or nb.read_bytes() != text.encode("utf-8")]
    if args.check:
        for nb in stale:
            print(f"stale: {nb} (run python scripts/book_notebooks.py)")
        return 1 if stale else 0
    for nb in stale:
        tmp = nb.with_name(nb.name + ".tmp")
        tmp.write_bytes(wanted[nb].encode("utf-8"))
        tmp.replace(nb)
        print(f"wrote {nb}")
    print(f"{len(wanted)} notebooks, {len(stale)} rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
