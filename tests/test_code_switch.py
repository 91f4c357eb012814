"""Dictionary code-switching of the pretraining text: translation through English, case, rates,
per-epoch determinism, and pieces equal to encoding the switched words."""
from __future__ import annotations

import random

import pytest

from data.code_switch import SwitchedCorpus, load_lexicon, switch_sentence, translate


@pytest.fixture
def lexicon(tmp_path):
    (tmp_path / "de-en.txt").write_text("haus house\nhaus home\nstadt city\nder the\n", encoding="utf-8")
    (tmp_path / "fr-en.dict").write_text("house @ maison\ncity @ ville\nthe @ le\n", encoding="utf-8")  # hunalign: tgt @ src
    return load_lexicon(tmp_path, {"de": "de-en.txt", "fr": "fr-en.dict"})


def test_lexicon_reads_both_directions_and_both_formats(lexicon):
    assert lexicon["de", "en"]["haus"] == ["house", "home"]
    assert lexicon["en", "de"] == {"house": ["haus"], "home": ["haus"], "city": ["stadt"], "the": ["der"]}
    assert lexicon["fr", "en"] == {"maison": ["house"], "ville": ["city"], "le": ["the"]}


def test_translation_pivots_through_english_and_keeps_case(lexicon):
    rng = random.Random(0)
    assert translate("Stadt", "de", "fr", lexicon, rng) == "Ville"  # de -> en -> fr
    assert translate("STADT", "de", "en", lexicon, rng) == "CITY"
    assert translate("ville", "fr", "de", lexicon, rng) == "stadt"
    assert translate("Berlin", "de", "fr", lexicon, rng) is None  # not in the dictionary
    # "haus" -> "home" has no French translation: the two-hop path gives None for that draw
    draws = {translate("haus", "de", "fr", lexicon, random.Random(seed)) for seed in range(40)}
    assert draws == {"maison", None}


def test_rate_zero_keeps_every_word_and_rate_one_switches_every_translatable_word(lexicon):
    words = ["Der", "Stadt", "Berlin", "."]
    assert switch_sentence(words, "de", lexicon, ["de", "en"], 0.0, random.Random(1)) == words
    assert switch_sentence(words, "de", lexicon, ["de", "en"], 1.0, random.Random(1)) == ["The", "City", "Berlin", "."]


def test_a_hub_pairs_every_switch_with_the_hub_language(lexicon):
    # languages de, en, fr: without a hub an English sentence switches into de or fr; with hub "de"
    # only into German, and German sentences still switch into either of the others
    en, de = ["the", "city"], ["Der", "Stadt"]
    free = {tuple(switch_sentence(en, "en", lexicon, ["de", "en", "fr"], 1.0, random.Random(s))) for s in range(20)}
    assert free == {("der", "stadt"), ("le", "ville")}
    hub = {tuple(switch_sentence(en, "en", lexicon, ["de", "en", "fr"], 1.0, random.Random(s), hub="de"))
           for s in range(20)}
    assert hub == {("der", "stadt")}
    from_hub = {tuple(switch_sentence(de, "de", lexicon, ["de", "en", "fr"], 1.0, random.Random(s), hub="de"))
                for s in range(20)}
    assert from_hub == {("The", "City"), ("Le", "Ville")}
    with pytest.raises(ValueError, match="code_switch_hub: 'es'"):
        SwitchedCorpus([], lexicon, 0.5, _WordTokenizer(), seed=0, hub="es")


class _WordTokenizer:
    """Each character is a piece: enough to check the per-word cache against direct encoding."""

    def encode_words(self, words):
        ids = [ord(c) for w in words for c in w]
        index = [k for k, w in enumerate(words) for _ in w]
        return ids, index


def test_switched_corpus_is_seeded_per_epoch_and_pieces_match_the_switched_words(lexicon):
    sentences = [("de", ["Der", "Stadt", "Haus"]), ("fr", ["le", "ville", "Paris"]), ("en", ["the", "city"])] * 20
    corpus = SwitchedCorpus(sentences, lexicon, 0.5, _WordTokenizer(), seed=7)
    assert corpus.switched(3) == SwitchedCorpus(sentences, lexicon, 0.5, _WordTokenizer(), seed=7).switched(3)
    assert corpus.switched(3) != corpus.switched(4)
    switched = corpus.switched(3)
    assert switched != sentences and [lang for lang, _ in switched] == [lang for lang, _ in sentences]
    assert corpus.pieces(3) == [[ord(c) for w in words for c in w] for _, words in switched]


def test_rate_outside_unit_interval_and_missing_dictionary_are_errors(lexicon, tmp_path):
    with pytest.raises(ValueError, match="code_switch_rate"):
        SwitchedCorpus([], lexicon, 1.5, _WordTokenizer(), seed=0)
    with pytest.raises(FileNotFoundError, match=r"code_switch_dicts\['es'\].*es-en.txt"):
        load_lexicon(tmp_path, {"es": "es-en.txt"})


def test_build_task_switches_only_the_listed_languages(data_root, tmp_path):
    from core.config import load_config
    from data.text import encode_sentences, gather_text, split_heldout
    from tasks.mlm import build_task

    cfg = load_config(None, [
        "task=mlm", f"data.root={data_root}", "mlm.ner_splits={de: train, es: train}", "mlm.vocab_size=400",
        "mlm.spm_input_sentences=3000", "mlm.code_switch_rate=0.5", "mlm.code_switch_sources=[es]",
        "mlm.code_switch_dicts={de: muse_dicts/dm-bli/de-en.txt, es: muse_dicts/dm-bli/es-en.txt}",
        f"train.out_dir={tmp_path}/{{name}}", "train.name=cs"])
    task = build_task(cfg)
    corpus, _ = split_heldout(gather_text(cfg.data, cfg.mlm), cfg.mlm.heldout_every)
    assert task.train_pieces == encode_sentences(task.tokenizer, corpus["ner de train"])  # German as it is
    assert {lang for lang, _ in task.switched.sentences} == {"es"}
    assert len(task.switched.sentences) == len(corpus["ner es train"])
    epoch0, epoch1 = task.epoch_pieces(0), task.epoch_pieces(1)
    assert epoch0[:len(task.train_pieces)] == epoch1[:len(task.train_pieces)] == task.train_pieces
    assert epoch0 != epoch1  # the Spanish part is switched anew each epoch

    cfg.mlm.code_switch_sources = ["ru"]
    with pytest.raises(ValueError, match=r"code_switch_sources: \['ru'\]"):
        build_task(cfg)
