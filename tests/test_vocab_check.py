"""A tokenizer and weights from different checkpoints stop NER, relation extraction, alignment and
vocabulary extension at build time, with an error naming both sizes and both files."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.config import load_config
from data.conll import Sentence
from models.vocab_check import check_vocab_match
from tasks.ner import write_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parent.parent
WORDS = ["".join("abcdefghijklmnopqrstuvwxyz"[(7 * i + 3 * k * k) % 26] for k in range(3 + i % 5)) for i in range(300)]


@pytest.fixture(scope="module")
def mismatched(tmp_path_factory):
    """A tiny checkpoint (120 ids) whose sentencepiece model comes from another one (80 ids)."""
    tmp = tmp_path_factory.mktemp("vocab")
    text = [Sentence(WORDS[i:i + 12], []) for i in range(len(WORDS))]
    model, other = write_tiny_checkpoint(tmp / "model", text, vocab_size=120), write_tiny_checkpoint(
        tmp / "other", text, vocab_size=80)
    (model / "tokenizer.json").unlink(missing_ok=True)
    shutil.copy(other / "sentencepiece.bpe.model", model / "sentencepiece.bpe.model")
    return model


def expected(folder: Path) -> str:
    return (rf"model\.name_or_path: the tokenizer \({folder}/sentencepiece\.bpe\.model\) has 80 pieces but the "
            rf"model \({folder}/config\.json vocab_size\) has 120 embedding rows")


def test_ner_relation_and_align_refuse_a_foreign_tokenizer(mismatched):
    import tasks.align
    import tasks.ner
    import tasks.relation

    cfg = load_config(ROOT / "configs/tiny_ner.yaml", [f"model.name_or_path={mismatched}"])
    with pytest.raises(ValueError, match=expected(mismatched)):
        tasks.ner.load_model(cfg, 7)
    cfg = load_config(ROOT / "configs/tiny_re.yaml", [f"model.name_or_path={mismatched}"])
    with pytest.raises(ValueError, match=expected(mismatched)):
        tasks.relation.load_model(cfg, 6, [])
    cfg = load_config(ROOT / "configs/mini_align_de.yaml", [f"model.name_or_path={mismatched}"])
    with pytest.raises(ValueError, match=expected(mismatched)):
        tasks.align.build_task(cfg)  # the model loads (and is checked) before any data is read


def test_a_matching_tokenizer_passes(mismatched):
    from models import load_pretrained

    model, tok = load_pretrained(mismatched.parent / "other", task="encoder")
    check_vocab_match(model.config.vocab_size, tok, "model.name_or_path", mismatched.parent / "other")
