"""Every marker style on a Korean and an English example: the entity pieces land where the spans say;
the window keeps both entities and their markers, and counts what cannot fit."""
from __future__ import annotations

import pytest

from data.markers import MARKER_STYLES, MarkerEncoder, marker_tokens
from data.relation import Entity, RelationExample
from data.tokenizer import XLMRTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

KO = RelationExample("ko", "조선의 장군 이순신은 한산도에서 일본 수군을 물리쳤다.",
                     Entity("이순신", 7, 9, "PER"), Entity("조선", 0, 1, "ORG"), "per:employee_of")
EN = RelationExample("en", "Bill Gates founded Microsoft in Redmond , Washington .",
                     Entity("Bill Gates", 0, 9, "PER"), Entity("Microsoft", 19, 27, "ORG"), "org:founded_by")
TEXT = [KO.sentence, EN.sentence, "이순신 장군은 조선 수군을 이끌었다.", "사람 단체 장소 날짜 기타 수량",
        "Microsoft was founded by Bill Gates and Paul Allen .", "@ * person * # ^ organization ^"] * 20


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return XLMRTokenizer.train(TEXT, 400, tmp_path_factory.mktemp("spm"), character_coverage=1.0)


def special_ids(tok, style):
    return {t: tok.vocab_size + i for i, t in enumerate(marker_tokens(style, ["PER", "ORG"]))}


@pytest.mark.parametrize("style", MARKER_STYLES)
@pytest.mark.parametrize("ex", [KO, EN], ids=["ko", "en"])
def test_entity_pieces_land_on_their_spans(tok, style, ex):
    ids = special_ids(tok, style)
    enc = MarkerEncoder(tok, style, max_length=128, special_ids=ids).encode(ex)
    assert enc.input_ids[0] == tok.bos_id and enc.input_ids[-1] == tok.eos_id and not enc.truncated
    for role, ent, marker, (a, b) in (("SUBJ", ex.subj, enc.subj_marker, enc.subj_span),
                                      ("OBJ", ex.obj, enc.obj_marker, enc.obj_span)):
        pieces = enc.input_ids[a:b]
        if style == "entity_mask":
            assert pieces == [ids[f"[{role}-{ent.type}]"]] and marker == a
            continue
        assert tok.decode(pieces) == ent.word  # exactly the entity's own pieces
        first = enc.input_ids[marker]
        if style == "entity_marker":
            assert first == ids["[E1]" if role == "SUBJ" else "[E2]"]
            assert enc.input_ids[b] == ids["[/E1]" if role == "SUBJ" else "[/E2]"]
        elif style == "typed_entity_marker":
            assert first == ids[f"[{role}-{ent.type}]"] and enc.input_ids[b] == ids[f"[/{role}-{ent.type}]"]
        else:
            opening = tok.decode(enc.input_ids[marker:a])
            mark = "@" if role == "SUBJ" else "#"
            assert opening.startswith(mark) and tok.decode(enc.input_ids[b:]).startswith(mark)
            if style == "typed_entity_marker_punct":
                word = {"ko": {"PER": "사람", "ORG": "단체"}, "en": {"PER": "person", "ORG": "organization"}}
                assert word[ex.guid][ent.type] in opening or word["en"][ent.type] in opening


def test_korean_type_words_spell_out_opaque_codes(tok):
    enc = MarkerEncoder(tok, "typed_entity_marker_punct", 128, type_words={"PER": "사람", "ORG": "단체"})
    item = enc.encode(KO)
    assert tok.decode(item.input_ids[item.subj_marker:item.subj_span[0]]).replace(" ", "") == "@*사람*"
    assert tok.decode(item.input_ids[item.obj_marker:item.obj_span[0]]).replace(" ", "") == "#^단체^"


def test_new_tokens_are_required():
    assert marker_tokens("entity_marker_punct", ["PER"]) == []
    assert marker_tokens("typed_entity_marker", ["PER"]) == ["[SUBJ-PER]", "[/SUBJ-PER]", "[OBJ-PER]", "[/OBJ-PER]"]


def test_missing_special_id_is_an_error(tok):
    with pytest.raises(KeyError, match=r"\[E1\]"):
        MarkerEncoder(tok, "entity_marker", 128).encode(EN)


def test_window_keeps_both_entities(tok):
    long = RelationExample("w", "Microsoft was founded . " * 10 + EN.sentence + " Paul Allen ." * 10,
                           Entity("Bill Gates", 240, 249, "PER"), Entity("Microsoft", 259, 267, "ORG"), "x")
    assert long.sentence[240:250] == "Bill Gates"
    full = MarkerEncoder(tok, "entity_marker_punct", 512).encode(long)
    for max_length in (40, 64):
        enc = MarkerEncoder(tok, "entity_marker_punct", max_length).encode(long)
        assert len(enc) == max_length and enc.truncated and not enc.overflow
        assert tok.decode(enc.input_ids[slice(*enc.subj_span)]) == "Bill Gates"
        assert tok.decode(enc.input_ids[slice(*enc.obj_span)]) == "Microsoft"
        # the kept context is contiguous around the entities: a sub-list of the full encoding
        inner = enc.input_ids[1:-1]
        assert any(full.input_ids[i:i + len(inner)] == inner for i in range(len(full)))


def test_window_counts_what_cannot_fit(tok):
    far = RelationExample("f", "Bill Gates " + "and Paul Allen " * 20 + "Microsoft",
                          Entity("Bill Gates", 0, 9, "PER"), Entity("Microsoft", 311, 319, "ORG"), "x")
    assert far.sentence[311:] == "Microsoft"
    enc = MarkerEncoder(tok, "entity_marker_punct", 32).encode(far)
    assert enc.overflow and len(enc) == 32  # the middle of the between-text is cut, the entities stay
    assert tok.decode(enc.input_ids[slice(*enc.subj_span)]) == "Bill Gates"
    assert tok.decode(enc.input_ids[slice(*enc.obj_span)]) == "Microsoft"
