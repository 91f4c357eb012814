"""Extension is language-agnostic: a tiny model grown into a made-up language written in Runic, by config
values alone (configs/extend_xlmr.yaml, its text through extend.text_files), with each init rule that needs
static vectors; and the init settings' bad inputs."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import transformers

import train
from core.config import load_config
from data.conll import Sentence
from models import load_pretrained
from tasks.ner import write_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
RUNES = [chr(c) for c in range(0x16A0, 0x16EB)]  # ᚠ .. ᛪ: a script no tokenizer here was trained on
LATIN = "abdefgiklmnoprstu"


def lexicon(alphabet, n: int, rng: random.Random, shortest: int = 3) -> list[str]:
    """``n`` distinct made-up words of ``shortest``..7 letters of ``alphabet``."""
    words: list[str] = []
    while len(words) < n:
        w = "".join(rng.choice(alphabet) for _ in range(rng.randint(shortest, 7)))
        if w not in words:
            words.append(w)
    return words


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A Latin-script base language and a Runic one; word i of one translates word i of the other, and
    the Runic text is the Latin text translated word for word (so contexts, and vectors, correspond)."""
    rng = random.Random(0)
    latin, runic = lexicon(LATIN, 80, rng), lexicon(RUNES, 80, rng)
    zipf = [1 / (r + 1) for r in range(80)]
    base_sentences = [[latin[i] for i in rng.choices(range(80), zipf, k=rng.randint(5, 12))] for _ in range(500)]
    for s in base_sentences:  # numbers and punctuation, kept by the translation: pieces both texts share
        s.insert(rng.randrange(len(s)), str(rng.choice([1, 2, 3, 12, 20, 1990, 2000])))
        s.append(rng.choice([".", "!", "?"]))
    root = tmp_path_factory.mktemp("data")
    (root / "base.txt").write_text("\n".join(map(" ".join, base_sentences)) + "\n", encoding="utf-8")
    translated = [[runic[latin.index(w)] if w in latin else w for w in s] for s in base_sentences]
    (root / "runic.txt").write_text("\n".join(map(" ".join, translated)) + "\n", encoding="utf-8")
    ogham = lexicon([chr(c) for c in range(0x1681, 0x169B)], 80, rng)  # ᚁ .. ᚚ: a second unseen script
    (root / "ogham.txt").write_text("\n".join(" ".join(ogham[latin.index(w)] if w in latin else w for w in s)
                                              for s in base_sentences[:250]) + "\n", encoding="utf-8")
    (root / "dict.txt").write_text("".join(f"{a} {b}\n" for a, b in zip(latin[:40], runic[:40])), encoding="utf-8")
    (root / "bad_dict.txt").write_text("one two three\n", encoding="utf-8")
    base = write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model",
                                 [Sentence(s, ["O"] * len(s)) for s in base_sentences], vocab_size=120, seed=0)
    return root, base, tmp_path_factory.mktemp("runs")


def args(setup, name, *extra):
    root, base, runs = setup
    return [str(ROOT / "configs" / "extend_xlmr.yaml"), f"data.root={root}", f"model.name_or_path={base}",
            "extend.text_files=[runic.txt]", "extend.base_ner_splits={}", "extend.base_text_files=[base.txt]",
            "extend.spm_vocab_size=200", "extend.new_pieces=70", "extend.init_vector_dim=16",
            "extend.init_vector_epochs=2", "extend.init_k=4", "mlm.seq_length=32", "mlm.heldout_every=10",
            "mlm.eval_sequences=8", "mlm.pieces_budget=512", "train.batch_size=8", "train.eval_every=2",
            "train.precision=fp32", f"train.out_dir={runs}/{{name}}", f"train.name={name}", *extra]


def test_runic_extension_by_config_alone(setup):
    root, base, runs = setup
    assert train.main(args(setup, "runic", "extend.init=focus")) == 0
    summary = json.loads((runs / "runic" / "extend_summary.json").read_text())
    base_model, base_tok = load_pretrained(base, task="masked-lm")
    V = base_tok.vocab_size
    before, after = summary["heldout_before"], summary["heldout_after"]
    assert before["unk_word_rate"] > 0.75 and after["unk_word_rate"] < before["unk_word_rate"] / 10  # Runic words were <unk>
    assert summary["base_text_check"]["changed"] == 0 and summary["vocab_size"] == V + 70
    assert summary["init_vectors"]["rule"] == "focus" and summary["init_vectors"]["new_rows_from_vectors"] > 0
    model, tok = load_pretrained(runs / "runic" / "model", task="masked-lm")
    sentence = (root / "runic.txt").read_text(encoding="utf-8").splitlines()[3]
    assert tok.encode(sentence).count(tok.unk_id) < base_tok.encode(sentence).count(base_tok.unk_id)
    hf = transformers.XLMRobertaForMaskedLM.from_pretrained(runs / "runic" / "model").eval()
    ids = torch.tensor([tok.encode(sentence)])
    assert ids.max() >= base_tok.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(input_ids=ids).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("rule", ["wechsel", "focus"])
def test_vector_inits_keep_old_rows(setup, rule):
    from tasks.extend import build_task
    base_model, base_tok = load_pretrained(setup[1], task="masked-lm")
    V = base_tok.vocab_size
    config = args(setup, f"grow_{rule}", f"extend.init={rule}", "extend.init_dictionary=dict.txt")
    task = build_task(load_config(config[0], config[1:]))
    rows, bias = task.grown.encoder.embeddings.word_embeddings.weight, task.grown.lm_head.bias
    assert torch.equal(rows[:V], base_model.encoder.embeddings.word_embeddings.weight)
    assert torch.equal(bias[:V], base_model.lm_head.bias) and rows.shape[0] == V + 70
    report = task.report["init_vectors"]
    assert report["new_rows_from_vectors"] + report["new_rows_gaussian"] == 70
    if rule == "wechsel":
        assert report["dictionary_pairs"] == 40 and report["dictionary_pairs_used"] > 20


def test_control_with_a_vector_rule_grows_nothing(setup):
    from tasks.extend import build_task
    base_model, base_tok = load_pretrained(setup[1], task="masked-lm")
    config = args(setup, "control", "extend.init=wechsel", "extend.extend_vocab=false")
    task = build_task(load_config(config[0], config[1:]))
    assert task.tokenizer.vocab_size == base_tok.vocab_size and "init_vectors" not in task.report
    assert torch.equal(task.grown.encoder.embeddings.word_embeddings.weight,
                       base_model.encoder.embeddings.word_embeddings.weight)


@pytest.mark.parametrize("extra, message", [
    (["extend.init=wechsel", "extend.init_dictionary=missing.txt"], "extend.init_dictionary: "),
    (["extend.init=wechsel", "extend.init_dictionary=bad_dict.txt"], "bad_dict.txt:1"),
    (["extend.init=wechsel"], "no word is spelt the same"),  # no dictionary, and no shared spelling
    (["extend.init=focus", "extend.init_k=0"], "init_k >= 1"),
    (["extend.init=fasttext"], "extend.init must be one of"),
])
def test_bad_init_settings_are_one_error_line(setup, capsys, extra, message):
    root, base, runs = setup
    assert train.main(args(setup, "bad", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (runs / "bad").exists()


def test_two_scripts_in_one_extension(setup):
    """Two languages in one run by config alone (as configs/mini_extend_ruko.yaml): one unigram model of
    both texts; the new pieces cover both scripts, more of them for the language with more text."""
    from tasks.extend import build_task
    config = args(setup, "two", "extend.text_files=[runic.txt,ogham.txt]", "extend.spm_vocab_size=300",
                  "extend.new_pieces=120", "extend.init=mean")
    task = build_task(load_config(config[0], config[1:]))
    V = task.report["base_vocab_size"]
    pieces = task.tokenizer.convert_ids_to_tokens(range(V, task.tokenizer.vocab_size))
    by_hand = {name: sum(any(lo <= c <= hi for c in p) for p in pieces)
               for name, lo, hi in (("RUNIC", "\u16a0", "\u16ea"), ("OGHAM", "\u1681", "\u169a"))}
    counts = task.report["pieces"]["new_pieces_by_script"]  # what each language got
    assert counts == by_hand and sum(counts.values()) == 120
    assert counts["RUNIC"] > counts["OGHAM"] > 20  # 500 Runic lines, 250 Ogham ones
    assert task.report["heldout_after"]["unk_word_rate"] < task.report["heldout_before"]["unk_word_rate"] / 5
