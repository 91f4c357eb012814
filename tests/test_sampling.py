"""Language-mix downsampling and nested few-shot subsets."""
from __future__ import annotations

from data.conll import Sentence
from data.sampling import STUDY_MIX, apply_mix, downsample, mix_counts, nested_fewshot


def _sents(lang, n):
    return [Sentence([f"{lang}{i}"], ["O"], lang) for i in range(n)]


def test_study_mix_counts_with_the_data_at_hand():
    available = {"de": 20000, "fr": 8600, "it": 7050, "en": 20000}
    counts = mix_counts(available, STUDY_MIX)
    # shares sum to 1.001 and are normalised; de binds: total = 20000 / (0.629 / 1.001) -> 31,828
    assert counts == {"de": 20000, "fr": 7281, "it": 2671, "en": 1876}
    total = sum(counts.values())
    for lang, share in STUDY_MIX.items():
        assert abs(counts[lang] / total - share / sum(STUDY_MIX.values())) < 1e-3
    assert sum(mix_counts(available, STUDY_MIX, total=1000).values()) == 1000


def test_apply_mix_is_fixed_seed_and_in_file_order():
    by_lang = {"de": _sents("de", 100), "en": _sents("en", 100)}
    a = apply_mix(by_lang, {"de": 0.75, "en": 0.25}, seed=3)
    assert [s.lang for s in a].count("de") == 100 and [s.lang for s in a].count("en") == 33
    assert a == apply_mix(by_lang, {"de": 0.75, "en": 0.25}, seed=3)
    en = [int(s.words[0][2:]) for s in a if s.lang == "en"]
    assert en == sorted(en) and en != list(range(33))


def test_downsample_keeps_everything_when_asked_for_more():
    s = _sents("de", 10)
    assert downsample(s, 50, seed=0) == s and len(downsample(s, 4, seed=0)) == 4


def test_fewshot_subsets_are_nested():
    pool = _sents("fr", 5000)
    subsets = nested_fewshot(pool, [4000, 250, 1000, 500, 2000], seed=11)
    assert list(subsets) == [250, 500, 1000, 2000, 4000]
    assert [len(v) for v in subsets.values()] == [250, 500, 1000, 2000, 4000]
    sizes = list(subsets)
    for small, large in zip(sizes, sizes[1:]):
        assert {s.words[0] for s in subsets[small]} <= {s.words[0] for s in subsets[large]}
    assert subsets[250] == nested_fewshot(pool, [250], seed=11)[250]
    assert subsets[250] != nested_fewshot(pool, [250], seed=12)[250]
