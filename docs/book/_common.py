"""What every chapter of the book shares: the repository root on ``sys.path``, a tiny checkpoint
built in seconds, and where pictures go.

A chapter starts with ``from _common import ...``: that works when the chapter runs as a script
(``python docs/book/01_tokenizer.py``: the script's folder is on ``sys.path``) and as a notebook
opened in ``docs/book/`` (the kernel's working folder is on ``sys.path``).
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# A fixed German-ish text: the tokenizer and tiny model of every chapter are trained on it, so no
# chapter needs the public data or the mini model.
TEXT = ("Angela Merkel besucht das Rathaus in Paris . Der Bürgermeister von Berlin spricht mit "
        "Journalisten der Zeitung über den Besuch in Frankreich und die Stadt Hamburg").split()


def tiny_sentences():
    """Every rotation of TEXT, eight times (tags all O): enough text for a 120-id vocabulary."""
    from data.conll import Sentence

    return [Sentence(TEXT[i:] + TEXT[:i], ["O"] * len(TEXT)) for i in range(len(TEXT))] * 8


@lru_cache(maxsize=None)
def tiny_checkpoint(vocab_size: int = 120, seed: int = 0) -> Path:
    """A tiny random XLM-R (2 layers, H 32, N 2 heads) and a ``vocab_size`` sentencepiece vocabulary
    trained on TEXT, in the Hugging Face layout, written once per process to a temp folder (removed at exit); a
    path to any other checkpoint in that layout (``runs/mini_pretrain/model``) loads the same way."""
    from tasks.ner import write_tiny_checkpoint

    temp = tempfile.mkdtemp(prefix="xlt-book-")
    atexit.register(shutil.rmtree, temp, ignore_errors=True)
    folder = Path(temp) / "model"
    return write_tiny_checkpoint(folder, tiny_sentences(), vocab_size=vocab_size, seed=seed)


def model_dir() -> Path:
    """The checkpoint a chapter loads: ``$XLT_BOOK_MODEL`` (any folder in the Hugging Face XLM-R
    layout, e.g. ``runs/mini_pretrain/model``) or, by default, ``tiny_checkpoint()``."""
    chosen = os.environ.get("XLT_BOOK_MODEL")
    return Path(chosen) if chosen else tiny_checkpoint()


def book_out() -> Path:
    """Where pictures go: ``$BOOK_OUT``, else ``docs/book/out/`` (git-ignored)."""
    out = Path(os.environ.get("BOOK_OUT") or ROOT / "docs" / "book" / "out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_figure(fig, name: str) -> Path:
    """Save a matplotlib figure as ``book_out()/name`` (PNG), print its path, close it; inside a
    notebook also show it."""
    path = book_out() / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    if "ipykernel" in sys.modules:  # a notebook: show it inline as well
        from IPython.display import display

        display(fig)
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"picture: {path}")
    return path


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend unless a backend was chosen already
    (``MPLBACKEND``, or a notebook's inline backend)."""
    import matplotlib

    if "MPLBACKEND" not in os.environ and "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
