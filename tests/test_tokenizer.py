"""XLMRTokenizer against transformers' XLM-R tokenizers, on an spm model trained here.

The corpus mixes scripts (German/Spanish with diacritics, Russian Cyrillic, Korean Hangul) plus
hand-made odd whitespace; ids must be identical between our two back ends (sentencepiece model,
tokenizer.json) and transformers' XLMRobertaTokenizer / XLMRobertaTokenizerFast built from the
bare sentencepiece model (HF's own conversion) and from our tokenizer.json.
"""
from __future__ import annotations

import csv
import shutil

import pytest
import transformers

from data.tokenizer import XLMRTokenizer, precompiled_charsmap

ODD = ["a  b", "  leading", "trailing  ", "tab\tseparated\t\twords", "no\u00a0break\u00a0space",
       "zero\u200bwidth", "\u200b", "", " ", "\t", "Müller's  Café\t\t.", "ﬁ ligature ①", "Straße Ǆ",
       "line\nbreak", "mixed  ру́сский 한국어  text", "x\u3000y", "<mask> is not special in text?"]
ODD_WORDS = [["a", "", "b"], ["<mask>", "x<s>y"], ["\u200b", "x"], [" ", "y", "\t"], ["Café", "..."], ["▁", "▁a", "a▁"],
             ["", ""], ["ﬁ", "①", "\u00a0"]]


def read_panx(root, lang, n):
    sents, words = [], []
    for line in open(root / "panx" / lang / "train.conllu", encoding="utf-8"):
        line = line.rstrip("\n")
        if line:
            words.append(line.split("\t")[1])
        elif words:
            sents.append(words)
            words = []
            if len(sents) == n:
                break
    return sents


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from conftest import require_data
    from core.paths import data_root
    root = data_root()
    require_data(root)  # skip, or fail in CI
    word_sents = read_panx(root, "de", 800) + read_panx(root, "es", 800) + read_panx(root, "ru", 800)
    with open(root / "klue_re" / "dev" / "dev.csv", encoding="utf-8") as f:
        korean = [row["sentence"] for _, row in zip(range(800), csv.DictReader(f))]
    return word_sents, [" ".join(w) for w in word_sents] + korean


@pytest.fixture(scope="module")
def folders(corpus, tmp_path_factory):
    _, sentences = corpus
    ours = tmp_path_factory.mktemp("ours")
    XLMRTokenizer.train(sentences, 3000, ours)
    only_spm = tmp_path_factory.mktemp("only_spm")
    shutil.copy(ours / "sentencepiece.bpe.model", only_spm)
    only_json = tmp_path_factory.mktemp("only_json")
    shutil.copy(ours / "tokenizer.json", only_json)
    return ours, only_spm, only_json


@pytest.fixture(scope="module")
def tokenizers(folders):
    ours, only_spm, only_json = folders
    mine = {"spm": XLMRTokenizer.from_pretrained(only_spm), "json": XLMRTokenizer.from_pretrained(only_json)}
    hf = {"hf_spm": transformers.XLMRobertaTokenizer.from_pretrained(str(only_spm)),
          "hf_json": transformers.XLMRobertaTokenizer.from_pretrained(str(only_json)),
          "hf_fast_json": transformers.XLMRobertaTokenizerFast.from_pretrained(str(only_json))}
    return mine, hf


def test_specials_and_vocab(tokenizers):
    mine, hf = tokenizers
    for tok in mine.values():
        assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
        assert tok.vocab_size == 3000 and tok.mask_id == 2999
        assert tok.convert_ids_to_tokens([0, 1, 2, 3, 2999]) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    for h in hf.values():
        assert len(h) == 3000 and h.mask_token_id == 2999 and h.unk_token_id == 3
    spm_tok = mine["spm"]
    # fairseq offset: spm id i -> i + 1; spm's own <unk>=0 -> 3
    assert spm_tok.sp.piece_to_id("<unk>") == 0 and spm_tok.encode("\U0001F600", add_special_tokens=False)[-1] == 3
    piece = spm_tok.sp.id_to_piece(10)
    assert spm_tok.convert_ids_to_tokens([11]) == [piece] == mine["json"].convert_ids_to_tokens([11])


def test_sentence_ids_identical_everywhere(corpus, tokenizers):
    _, sentences = corpus
    mine, hf = tokenizers
    texts = sentences[::8] + ODD
    for text in texts:
        expected = mine["spm"].encode(text)
        assert expected[0] == 0 and expected[-1] == 2
        assert mine["json"].encode(text) == expected, repr(text)
        for name, h in hf.items():
            assert h(text)["input_ids"] == expected, (name, repr(text))
    unk_seen = any(3 in mine["spm"].encode(t) for t in texts)
    assert unk_seen  # Korean at vocab 3000 leaves characters out: the <unk> mapping is exercised


def test_encode_words_matches_fast_word_ids(corpus, tokenizers):
    word_sents, _ = corpus
    mine, hf = tokenizers
    for words in word_sents[::10] + ODD_WORDS:
        ids, word_index = mine["spm"].encode_words(words)
        assert mine["json"].encode_words(words) == (ids, word_index)
        for name in ("hf_json", "hf_fast_json", "hf_spm"):
            enc = hf[name](words, is_split_into_words=True, add_special_tokens=False)
            assert (enc["input_ids"], enc.word_ids()) == (ids, word_index), (name, words)
    ids, word_index = mine["spm"].encode_words(["a", "", "\u200b", "b"])
    assert set(word_index) == {0, 3}  # words 1 and 2 give no piece at all


def test_standalone_metaspace_piece(tokenizers):
    mine, _ = tokenizers
    ids, word_index = mine["spm"].encode_words(["한국어🙂"])
    pieces = mine["spm"].convert_ids_to_tokens(ids)
    assert pieces[0].startswith("▁") and word_index == [0] * len(ids)


def test_never_truncates(tokenizers):
    mine, _ = tokenizers
    words = ["Wort"] * 3000
    ids, word_index = mine["spm"].encode_words(words)
    assert len(ids) >= 3000 and word_index[-1] == 2999
    assert len(mine["json"].encode(" ".join(words))) == len(mine["spm"].encode(" ".join(words)))


def test_save_round_trip_and_charsmap(folders, tmp_path, tokenizers):
    ours, _, _ = folders
    mine, _ = tokenizers
    assert len(precompiled_charsmap((ours / "sentencepiece.bpe.model").read_bytes())) > 1000  # nmt_nfkc map
    mine["json"].save(tmp_path)  # a tokenizer.json-only tokenizer saves tokenizer.json only
    again = XLMRTokenizer.from_pretrained(tmp_path)
    assert again.encode("Grüße aus Köln") == mine["spm"].encode("Grüße aus Köln")
    with pytest.raises(FileNotFoundError, match="no sentencepiece.bpe.model"):
        XLMRTokenizer.from_pretrained(tmp_path, backend="spm")


def test_encode_words_batch_equals_one_call_per_sentence(tokenizers):
    """The batched call (one sentencepiece call over every word) = encode_words per sentence, on both
    back ends, with special-token strings, empty and zero-width words and an empty sentence."""
    mine, _ = tokenizers
    sentences = [["Hallo", "Welt"], [], ["a", "", "\u200b", "b"], ["<mask>", "x<s>y", "Köln"], ["한국어🙂"]]
    for tok in (mine["spm"], mine["json"]):
        assert tok.encode_words_batch(sentences) == [tok.encode_words(s) for s in sentences]
    assert mine["spm"].encode_words_batch(sentences) == mine["json"].encode_words_batch(sentences)
