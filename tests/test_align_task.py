"""The align task end to end on a tiny random model: the loss at f = f0 is the alignment part alone, a
short fit lowers it, the run exports an HF-layout encoder that the NER loader reads; bad pairs are named."""
import json

import pytest
import torch

from core.config import load_config
from data.tokenizer import XLMRTokenizer
from models import load_pretrained
from models.align_loss import alignment_l2
from models.encoder import XLMRConfig, XLMREncoder
from models.export import save_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")

DE = ["das haus ist klein", "der hund ist gross", "ein kleines haus", "der grosse hund schläft"]
EN = ["the house is small", "the dog is big", "a small house", "the big dog sleeps"]


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "data").mkdir()
    for name, lines in (("train.de", DE * 6), ("train.en", EN * 6), ("val.de", DE), ("val.en", EN)):
        (tmp_path / "data" / name).write_text("\n".join(lines) + "\n")
    tok = XLMRTokenizer.train(DE * 20 + EN * 20, 60, tmp_path / "model", character_coverage=1.0)
    config = XLMRConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=40, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    encoder = XLMREncoder(config)
    encoder.init_weights(torch.Generator().manual_seed(0))
    save_pretrained(encoder, tok, tmp_path / "model")
    overrides = [f"model.name_or_path={tmp_path / 'model'}", f"data.root={tmp_path / 'data'}", "task=align",
                 f"train.out_dir={tmp_path}/runs/{{name}}", "train.name=tiny_align", "train.batch_size=4",
                 "train.max_steps=6", "train.eval_every=3", "train.log_every=1", "train.lr=1e-3", "train.precision=fp32",
                 "align.train_pairs={en-de: [train.en, train.de]}", "align.dev_pairs={en-de: [val.en, val.de]}",
                 "align.aligner_iterations=10", "train.lazy_embedding_min_rows=1"]  # lazy rows on: one forward per step
    return tmp_path, overrides


def test_loss_at_f0_is_the_alignment_part_and_the_run_exports(setup):
    from tasks.align import build_task

    tmp_path, overrides = setup
    cfg = load_config(None, overrides)
    task = build_task(cfg)
    assert len(task.items) == 24 and any((tmp_path / "runs/align_cache").glob("en-de.intersect.*.talp"))
    assert task.items[0]["links"] == [(0, 0), (1, 1), (2, 2), (3, 3)]  # the aligner found the diagonal
    model = task.build_model().eval()
    batch = task.train_batches(0)[0]
    assert batch["n_tokens"] == len(batch["src_words"]) > 0
    with torch.no_grad():
        loss = task.loss(model, batch)
        src_states = model(batch["anchors"]["input_ids"], batch["anchors"]["attention_mask"])
    from tasks.align import side_vectors
    words = side_vectors(model, batch["both"], -1, "mean")
    anchors_alone = side_vectors(model, batch["anchors"], -1, "mean")
    assert words.shape[1] == src_states.shape[2]
    # the anchors inside the joint batch are the anchors encoded alone (padding changes nothing)
    assert torch.allclose(words[batch["first_anchor_word"]:], anchors_alone, atol=1e-5)
    want = alignment_l2(words[batch["src_words"]], words[batch["tgt_words"]])  # the regulariser is 0 at f = f0
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)

    result = task.run(cfg, tmp_path / "runs/tiny_align")
    assert len(task.evaluations) == 3  # before training, steps 3 and 6; the best-dev scores are not re-computed
    saved = json.loads((tmp_path / "runs/tiny_align/results.json").read_text())
    assert saved["train_pairs"] == 24 and "en-de_csls_s2t" in saved["dev_after"]
    assert result["dev_retrieval_after"] == saved["dev_after"]["dev_retrieval"]
    metrics = [json.loads(l) for l in (tmp_path / "runs/tiny_align/metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert saved["dev_after"]["dev_retrieval"] > saved["dev_before"]["dev_retrieval"]
    assert saved["dev_after"] == task.evaluations[1 + saved["best_step"] // 3 - 1]  # the record best.pt was saved at
    with torch.no_grad():  # and the same as evaluating the exported best-dev weights again
        again = task.evaluate(load_pretrained(tmp_path / "runs/tiny_align/model")[0])
    assert again == pytest.approx(saved["dev_after"], abs=1e-6)
    ner, _ = load_pretrained(tmp_path / "runs/tiny_align/model", task="token-classification", num_labels=7)
    aligned, _ = load_pretrained(tmp_path / "runs/tiny_align/model")
    assert torch.equal(ner.encoder.embeddings.word_embeddings.weight, aligned.embeddings.word_embeddings.weight)


def test_bad_pairs_are_named(setup):
    from tasks.align import build_task

    _, overrides = setup
    with pytest.raises(ValueError, match=r"align pair 'de-en'.*'en-de'"):
        build_task(load_config(None, overrides + ["align.train_pairs={de-en: [train.de, train.en]}"]))
    with pytest.raises(ValueError, match="align.loss must be one of"):
        build_task(load_config(None, overrides + ["align.loss=cosine"]))


def test_link_cache_is_keyed_on_the_words_not_the_file_names(setup):
    """A corpus changed under the same file names, with the same line count and the same sentence lengths,
    is word-aligned again (a new cache entry); the same words find their cached links again."""
    import random

    from models.word_align import align_corpus
    from tasks.align import build_task

    tmp_path, overrides = setup
    gen = random.Random(0)
    sentences = [gen.sample(range(12), gen.randint(3, 5)) for _ in range(40)]
    en = [[f"s{i}" for i in s] for s in sentences]
    corpora = {"same order": [[f"t{i}" for i in s] for s in sentences]}
    corpora["reversed"] = [list(reversed(words)) for words in corpora["same order"]]
    cfg = load_config(None, overrides + ["align.train_pairs={en-de: [p.en, p.de]}", "align.aligner_iterations=5"])
    (tmp_path / "data" / "p.en").write_text("\n".join(map(" ".join, en)) + "\n")
    cache = tmp_path / "runs/align_cache"
    got, fresh = {}, {}
    for name in ("same order", "reversed", "same order"):
        (tmp_path / "data" / "p.de").write_text("\n".join(map(" ".join, corpora[name])) + "\n")
        got[name] = [item["links"] for item in build_task(cfg).items]
        joint = align_corpus(en + [l.split() for l in EN], corpora[name] + [l.split() for l in DE], "intersect", 5)
        fresh[name] = [sorted(l) for l in joint[:40]]
    assert got == fresh and fresh["same order"] != fresh["reversed"]  # the links of the words read, every time
    assert len(list(cache.glob("en-de.intersect.*.talp"))) == 2  # the third build found the first one's links


def test_dev_max_pairs_caps_retrieval_and_reports_progress(setup, capsys):
    from tasks.align import build_task

    _, overrides = setup
    task = build_task(load_config(None, overrides + ["align.dev_max_pairs=2"]))
    corpus, links = task.dev["en-de"]
    assert len(corpus) == len(links) == 2 and corpus.tgt == [DE[0].split(), DE[1].split()]
    out = task.evaluate(task.frozen)
    printed = capsys.readouterr().out
    assert "[align] dev en-de: the first 2 of 4 pairs (align.dev_max_pairs)" in printed
    assert "dev retrieval en-de: 2/4 sentences encoded" in printed and "4/4 sentences encoded" in printed
    assert "word-aligning 26 pairs" in printed  # 24 training pairs + the 2 dev pairs aligned together
    assert set(out) == {"en-de_csls_s2t", "en-de_csls_t2s", "dev_retrieval"}
    with pytest.raises(ValueError, match="align.dev_max_pairs must be >= 0"):
        build_task(load_config(None, overrides + ["align.dev_max_pairs=-1"]))
