"""The grown tokenizer (data/extend_vocab.py, XLMRTokenizer.add_pieces / add_special_tokens) on real text.

A small base model is trained on German/English/Spanish/Dutch/French/Italian sentences and grown
with Russian + Korean pieces: base ids and base-language segmentations stay as they were, new ids
come after <mask>, and the sentencepiece model, tokenizer.json and transformers' XLM-R tokenizer
give identical ids on Cyrillic and Hangul text.
"""
from __future__ import annotations

import csv
import shutil

import pytest
import transformers

from data.extend_vocab import (ExtensionError, base_text_unchanged, candidate_pieces, extend_tokenizer,
                               segmentation_stats, train_target_model)
from data.tokenizer import XLMRTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
BASE_LANGS = ("de", "en", "es", "nl", "fr", "it")


def sentences(root, lang, split, n, skip=0):
    """The first n (after skip) sentences of a CoNLL file, words joined by spaces (read directly: fast)."""
    folder = "wikineural" if lang in ("fr", "it") else "panx"
    name = "val" if folder == "wikineural" or split == "dev" else split
    if folder == "wikineural" and split == "dev":
        skip += n  # fr/it ship one file: a later slice of it stands in for dev
    out, words = [], []
    for line in open(root / folder / lang / f"{name}.conllu", encoding="utf-8"):
        line = line.rstrip("\n")
        if line and not line.startswith("#"):
            words.append(line.split("\t")[1])
        elif words:
            out.append(" ".join(words))
            words = []
            if len(out) == skip + n:
                break
    return out[skip:]


@pytest.fixture(scope="module")
def texts():
    from conftest import require_data
    from core.paths import data_root
    root = data_root()
    require_data(root)  # skip, or fail in CI
    with open(root / "klue_re" / "train_subset" / "val_predictions.csv", encoding="utf-8-sig") as f:
        korean = [row["sentence"] for _, row in zip(range(1200), csv.DictReader(f))]
    russian = sentences(root, "ru", "train", 1500)
    return {"base": [s for lang in BASE_LANGS for s in sentences(root, lang, "train", 400)],
            "base_check": [s for lang in BASE_LANGS for s in sentences(root, lang, "dev", 150)],
            "target": russian[:1200] + korean[:1000], "ru_held": russian[1200:], "ko_held": korean[1000:]}


@pytest.fixture(scope="module")
def grown(texts, tmp_path_factory):
    base = XLMRTokenizer.train(texts["base"], 1200, tmp_path_factory.mktemp("base"))
    target = train_target_model(texts["target"], 1500)
    ext = extend_tokenizer(base, target, 600, texts["base"] + texts["base_check"])
    folder = tmp_path_factory.mktemp("grown")
    ext.tokenizer.save(folder)
    return base, ext, folder, target


def test_base_ids_unchanged_and_new_ids_after_mask(grown):
    base, ext, *_ = grown
    tok = ext.tokenizer
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, base.mask_id)
    assert tok.vocab_size == base.vocab_size + 600 and tok.new_ids() == list(range(1200, 1800))
    assert tok.convert_ids_to_tokens(range(base.vocab_size)) == base.convert_ids_to_tokens(range(base.vocab_size))
    assert tok.convert_ids_to_tokens(range(1200, 1800)) == [p for p, _ in ext.pieces]
    again = XLMRTokenizer.from_pretrained(grown[2])  # the proto alone says where <mask> is
    assert (again.vocab_size, again.mask_id) == (1800, 1199)


def test_base_text_segmented_exactly_as_before(texts, grown):
    base, ext, *_ = grown
    check = base_text_unchanged(base, ext.tokenizer, texts["base_check"] + texts["base"])
    assert check["readable"] > 2500 and check["changed"] == 0
    # words the base could not read (<unk>) are the ones allowed to change
    ru = base_text_unchanged(base, ext.tokenizer, texts["ru_held"])
    assert ru["readable"] < ru["sentences"] and ru["with_unk_changed"] > 0


def test_protection_drops_pieces_that_would_change_base_text(texts, grown):
    base, ext, *_ = grown
    dropped = ext.report["dropped_for_base_text"]
    assert dropped > 0  # Latin/digit pieces of the target text that would re-segment base words
    assert not set(ext.report["dropped_examples"]) & {p for p, _ in ext.pieces}
    # without protection such a piece does change a base sentence
    unprotected = base.add_pieces([(p, 0.0) for p in ext.report["dropped_examples"][:5]])
    assert base_text_unchanged(base, unprotected, texts["base"] + texts["base_check"])["changed"] > 0


def test_unk_rate_and_pieces_per_word_fall(texts, grown):
    base, ext, *_ = grown
    for held in (texts["ru_held"], texts["ko_held"]):
        before, after = segmentation_stats(base, held), segmentation_stats(ext.tokenizer, held)
        assert after["unk_word_rate"] < 0.5 * before["unk_word_rate"]
        assert before["unk_word_rate"] > 0.5  # the base cannot read the scripts


CYRILLIC_HANGUL = ["Москва — столица России.", "Пётр Ильич Чайковский родился в 1840 году",
                   "서울특별시는 대한민국의 수도이다.", "한국어  와   русский  text", "ОАО «Газпром» (2005)",
                   "Ёжик в тумане", "\u200bпривет\u3000мир", "<mask> Москва <s>", ""]


def test_spm_json_and_transformers_identical(texts, grown, tmp_path):
    _, ext, folder, _ = grown
    spm_tok = XLMRTokenizer.from_pretrained(folder, backend="spm")
    json_tok = XLMRTokenizer.from_pretrained(folder, backend="tokenizers")
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    shutil.copy(folder / "sentencepiece.bpe.model", tmp_path)
    hf_spm = transformers.XLMRobertaTokenizer.from_pretrained(str(tmp_path))  # HF's own conversion of the proto
    assert json_tok.vocab_size == spm_tok.vocab_size == 1800 and hf.mask_token_id == 1199
    new_seen = False
    for text in CYRILLIC_HANGUL + texts["ru_held"][:100] + texts["ko_held"][:100]:
        ids = spm_tok.encode(text)
        new_seen |= any(i >= 1200 for i in ids)
        assert json_tok.encode(text) == ids, text
        assert hf(text)["input_ids"] == ids, text
        if "<mask>" not in text:  # HF's converter appends its own <mask>; ordinary pieces agree
            assert hf_spm(text)["input_ids"] == ids, text
    assert new_seen
    words = texts["ru_held"][5].split() + ["서울은", "한국의"]
    assert json_tok.encode_words(words) == spm_tok.encode_words(words)


def test_special_tokens_added_after_extension(texts, grown, tmp_path):
    _, ext, *_ = grown
    tok, ids = ext.tokenizer.add_special_tokens(["<e1>", "</e1>", "<e2:PER>"])
    assert ids == [1800, 1801, 1802] and tok.vocab_size == 1803
    tok.save(tmp_path)
    text = "<e1>Москва</e1> и <e2:PER>Сеул<e2:PER> 서울 <mask>"
    expected = tok.encode(text)
    assert 1800 in expected and 1802 in expected and 1199 in expected
    assert XLMRTokenizer.from_pretrained(tmp_path, backend="tokenizers").encode(text) == expected
    assert transformers.AutoTokenizer.from_pretrained(str(tmp_path))(text)["input_ids"] == expected
    assert tok.decode(expected[1:-1]) == ext.tokenizer.decode(ext.tokenizer.encode(text.replace("<e1>", "")
                                                                             .replace("</e1>", "").replace("<e2:PER>", ""))[1:-1])


def test_bad_inputs(texts, grown, tmp_path):
    base, ext, folder, target = grown
    with pytest.raises(ExtensionError, match="new_pieces=5000, but the target text gives only"):
        extend_tokenizer(base, target, 5000, texts["base"])
    with pytest.raises(ExtensionError, match="already extended with 600 pieces"):
        extend_tokenizer(ext.tokenizer, target, 300, texts["base"])
    with pytest.raises(ValueError, match="already in the vocabulary"):
        ext.tokenizer.add_pieces([ext.pieces[0]])
    shutil.copy(folder / "tokenizer.json", tmp_path)
    with pytest.raises(ValueError, match="needs sentencepiece.bpe.model"):
        XLMRTokenizer.from_pretrained(tmp_path).add_pieces([("▁x", -1.0)])
    assert len(candidate_pieces(base, target)) > 600
