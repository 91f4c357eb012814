"""WordPiece tokenizer (klue/roberta's layout) and the loader's dispatch: transformers is the oracle
for the ids and for the encoder's outputs on a random RoBERTa checkpoint with that tokenizer."""
from __future__ import annotations

import pytest
import torch

from data.wordpiece import WordPieceTokenizer, is_wordpiece_folder
from models import load_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = ["이순신은 조선 중기의 무신이다.", "조선의 수군을 이끌고 한산도에서 승리했다.", "KLUE 데이터의 관계 추출 과제",
        "Bill Gates founded Microsoft in 1975.", "@ * 사람 * 이순신 @ 은 # ^ 단체 ^ 조선 # 의 장군"] * 10
SAMPLES = ["이순신은 조선의 장군이다.", "Microsoft는 1975년에 세워졌다!", "  공백   여러 개  ", "미등록어휘ꙮ"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("klue_like")
    tok = WordPieceTokenizer.train(TEXT, 300, out)
    config = transformers.RobertaConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=66,
                                        type_vocab_size=1, pad_token_id=tok.pad_id, bos_token_id=tok.bos_id,
                                        eos_token_id=tok.eos_id, layer_norm_eps=1e-5)
    torch.manual_seed(0)
    transformers.RobertaModel(config, add_pooling_layer=False).eval().save_pretrained(out)
    return out


def test_specials_in_klue_order(folder):
    tok = WordPieceTokenizer.from_pretrained(folder)
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert is_wordpiece_folder(folder)


def test_ids_match_transformers(folder):
    from transformers import AutoTokenizer

    ours, theirs = WordPieceTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    for text in SAMPLES:
        assert ours.encode(text) == theirs(text)["input_ids"]
    words = SAMPLES[0].split()
    ids, word_index = ours.encode_words(words)
    enc = theirs(words, is_split_into_words=True, add_special_tokens=False)
    assert ids == enc["input_ids"] and word_index == enc.word_ids()
    assert ours.encode("미등록어휘ꙮ", add_special_tokens=False).count(ours.unk_id) >= 1


def test_loader_dispatch_and_logits_match_transformers(folder):
    from transformers import RobertaModel

    model, tok = load_pretrained(folder, task="encoder")
    assert isinstance(tok, WordPieceTokenizer)
    batch = [tok.encode(s) for s in SAMPLES[:2]]
    T = max(map(len, batch))
    ids = torch.tensor([b + [tok.pad_id] * (T - len(b)) for b in batch])
    mask = ids != tok.pad_id
    ref = RobertaModel.from_pretrained(folder, add_pooling_layer=False).eval()
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        got = model(ids, mask)
    assert torch.allclose(got[mask], expected[mask], atol=1e-5)


def test_special_tokens_follow_the_vocabulary(folder):
    from transformers import AutoTokenizer

    tok = WordPieceTokenizer.from_pretrained(folder)
    grown, ids = tok.add_special_tokens(["[E1]", "[/E1]"])
    assert ids == [tok.vocab_size, tok.vocab_size + 1] and tok.encode("[E1]") != grown.encode("[E1]")
    out = folder.parent / "grown_wp"
    grown.save(out)
    assert AutoTokenizer.from_pretrained(out)("이순신 [E1] 장군 [/E1]")["input_ids"] == grown.encode("이순신 [E1] 장군 [/E1]")
