"""The book (docs/book/): every chapter runs, and every committed notebook is its chapter's
generated notebook (scripts/book_notebooks.py)."""
from __future__ import annotations

import json
import re
import runpy
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "docs" / "book"
sys.path.insert(0, str(ROOT / "scripts"))
import book_notebooks  # noqa: E402

CHAPTERS = book_notebooks.chapters(BOOK)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


def test_the_book_has_chapters_with_distinct_numbers():
    numbers = [p.name[:2] for p in CHAPTERS]
    assert "02" in numbers and len(set(numbers)) == len(numbers)


def global_settings() -> dict:
    """The process-wide torch settings a chapter must leave as it found them."""
    return {"dtype": torch.get_default_dtype(), "threads": torch.get_num_threads(),
            "grad": torch.is_grad_enabled(), "deterministic": torch.are_deterministic_algorithms_enabled(),
            "anomaly": torch.is_anomaly_enabled()}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs(chapter, tmp_path, monkeypatch, capsys):
    """The chapter runs top to bottom as ``python docs/book/NN_slug.py`` would, on its own tiny
    checkpoint, in seconds; its pictures land in $BOOK_OUT."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("BOOK_OUT", str(tmp_path))
    monkeypatch.delenv("XLT_BOOK_MODEL", raising=False)
    monkeypatch.syspath_prepend(str(BOOK))
    monkeypatch.setattr(sys, "argv", [str(chapter)])
    settings = global_settings()
    start = time.perf_counter()
    runpy.run_path(str(chapter), run_name="__main__")
    seconds = time.perf_counter() - start
    assert global_settings() == settings, f"{chapter.name} changed a global torch setting"
    printed = capsys.readouterr().out
    assert seconds < 60, f"{chapter.name} took {seconds:.1f} s"
    for line in printed.splitlines():
        if line.startswith("picture: "):
            assert Path(line[len("picture: "):]).parent == tmp_path and Path(line[9:]).stat().st_size > 1000


EXERCISE_TESTS = re.findall(r"^def test_ch(\d\d)_exercise_(\d+)_", "".join(
    p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests").glob("test_book_exercises*.py"))), flags=re.M)
HISTORY = re.compile(r"\bsessions?\b|\bissues? #?\d|\bengineers?\b|\bwork rounds?\b", flags=re.I)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_format_title_exercises_and_their_tests(chapter):
    """``# NN. Title`` first, ``## Exercises`` last with numbered exercises, each solved by a
    ``test_chNN_exercise_M_*`` in tests/test_book_exercises*.py; the prose speaks of the product only."""
    cells = book_notebooks.parse_cells(chapter.read_text(encoding="utf-8"), chapter.name)
    number = chapter.name[:2]
    assert cells[0][0] == "markdown" and cells[0][1].startswith(f"# {number}. "), cells[0][1][:40]
    kind, last = cells[-1]
    assert kind == "markdown" and "## Exercises" in last, f"{chapter.name} must end with a '## Exercises' cell"
    exercises = re.findall(r"^(\d+)\. ", last.split("## Exercises", 1)[1], flags=re.M)
    assert exercises and exercises == [str(i) for i in range(1, len(exercises) + 1)]
    solved = sorted(m for n, m in EXERCISE_TESTS if n == number)
    assert solved == exercises, f"{chapter.name}: exercises {exercises}, tests for {solved}"
    text = chapter.read_text(encoding="utf-8")
    assert not HISTORY.search(text), HISTORY.search(text).group(0)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_notebook_is_generated_from_its_chapter(chapter):
    notebook = chapter.with_suffix(".ipynb")
    assert notebook.is_file(), f"{notebook.name} missing: run python scripts/book_notebooks.py"
    assert notebook.read_text(encoding="utf-8") == book_notebooks.notebook_of(chapter), \
        f"{notebook.name} differs from {chapter.name}: run python scripts/book_notebooks.py"


def test_notebook_cells_keep_code_and_markdown():
    text = "# %% [markdown]\n# # Title\n#\n# Some *prose*.\n\n# %%\nx = 1  # (B, T)\n\n\nprint(x)\n\n# %%\n# a comment\n"
    cells = book_notebooks.parse_cells(text)
    assert cells == [("markdown", "# Title\n\nSome *prose*."), ("code", "x = 1  # (B, T)\n\n\nprint(x)"),
                     ("code", "# a comment")]
    nb = json.loads(book_notebooks.notebook_json(cells))
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] == 5
    assert [c["id"] for c in nb["cells"]] == ["cell-0", "cell-1", "cell-2"]
    assert nb["cells"][1]["source"] == ["x = 1  # (B, T)\n", "\n", "\n", "print(x)"]
    assert nb["cells"][1]["outputs"] == [] and "outputs" not in nb["cells"][0]


@pytest.mark.parametrize("text, where", [
    ("print(1)\n# %%\nx = 1\n", ":1: text before the first cell marker"),
    ("# %% [markdown]\n# ok\nnot a comment\n", ":3: a markdown cell line"),
    ("# %% [raw]\nx\n", ":1: unknown cell marker"),
    ("# %% [markdown]\n# ok\n# %%\n\n", ":3: empty code cell"),
])
def test_a_malformed_chapter_is_one_error_line_and_nothing_written(tmp_path, capsys, text, where):
    good = tmp_path / "01_good.py"
    good.write_text("# %% [markdown]\n# # Good\n# %%\nx = 1\n", encoding="utf-8")
    (tmp_path / "02_bad.py").write_text(text, encoding="utf-8")
    assert book_notebooks.main(["--book", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 02_bad.py") and where in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*.ipynb"))  # the good chapter's notebook is not written either
    (tmp_path / "02_bad.py").unlink()
    assert book_notebooks.main(["--book", str(tmp_path)]) == 0
    assert book_notebooks.main(["--book", str(tmp_path), "--check"]) == 0
    good.write_text("# %% [markdown]\n# # Good\n# %%\nx = 2\n", encoding="utf-8")
    assert book_notebooks.main(["--book", str(tmp_path), "--check"]) == 1
