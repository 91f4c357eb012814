"""The NER task: loss, evaluation through windows, CRF head, results files, and a tiny end-to-end run."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.config import load_config
from core.metrics import entity_f1
from data.conll import Sentence, write_conll
from data.labels import IGNORE_INDEX, build_label_set
from models.tagger import CRFTagger, first_piece_view
from tasks.ner import NERTask, predict_tags
from test_windows import ChunkTokenizer  # pieces of 3 characters: a test's id table gives each piece a tag

LABELS = build_label_set()
K = len(LABELS)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


class OracleModel(nn.Module):
    """Logits = a fixed table per piece id: looks up the tag the test put in the id table."""

    def __init__(self, table: dict[int, int]):
        super().__init__()
        weight = torch.zeros(100, K)
        for piece, tag in table.items():
            weight[piece, tag] = 5.0
        self.table = nn.Parameter(weight)

    def forward(self, input_ids, attention_mask, select=None):
        logits = self.table[input_ids]  # (B, T, K)
        return logits if select is None else logits[select]  # (B, T, K) or (M, K)


def _sentences(n=30, seed=0, long_every=7):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = 60 if i % long_every == 0 else int(torch.randint(2, 9, (1,), generator=g))
        tags = [LABELS.tag(int(t)) for t in torch.randint(0, K, (length,), generator=g)]
        words = ["w" + "".join("abcdefgh"[int(c)] for c in torch.randint(0, 8, (int(torch.randint(1, 8, (1,), generator=g)),), generator=g)) for _ in tags]
        out.append(Sentence(words, tags))
    return out


@pytest.fixture
def ner_root(tmp_path):
    """A data root with de train/dev/test files written from random sentences."""
    for split, seed in (("train", 1), ("val", 2), ("test", 3)):
        (tmp_path / "panx/de").mkdir(parents=True, exist_ok=True)
        write_conll(tmp_path / f"panx/de/{split}.conllu", _sentences(seed=seed))
    return tmp_path


def _cfg(root, *extra):
    return load_config(overrides=[f"data.root={root}", "data.max_length=12", "data.stride=4",
                                  "train.batch_size=4", "train.precision=fp32", *extra])


def test_loss_is_summed_cross_entropy_over_labelled_pieces(ner_root):
    task = NERTask(_cfg(ner_root), ChunkTokenizer(), LABELS, first_model=OracleModel({}))
    table = torch.randn(100, K)
    model = OracleModel({})
    model.table.data = table
    batch = next(iter(task.train_batches(epoch=0)))
    logits = table[batch["input_ids"]]
    keep = batch["labels"] != IGNORE_INDEX
    manual = sum(F.cross_entropy(logits[keep][i:i + 1], batch["labels"][keep][i:i + 1]) for i in range(int(keep.sum())))
    assert int(batch["n_tokens"]) == int(keep.sum()) > 0
    torch.testing.assert_close(task.loss(model, batch), manual, rtol=1e-5, atol=1e-5)


def _oracle_for(sentences):
    """An id -> tag table consistent with the first piece of every word (collisions resolved by majority)."""
    tok = ChunkTokenizer()
    votes: dict[int, list[int]] = {}
    for s in sentences:
        ids, index = tok.encode_words(s.words)
        seen = set()
        for piece, w in zip(ids, index):
            if w not in seen:
                seen.add(w)
                votes.setdefault(piece, []).append(LABELS.id(s.tags[w]))
    return {p: max(set(v), key=v.count) for p, v in votes.items()}


def test_predictions_come_back_one_per_word_through_windows(ner_root):
    cfg = _cfg(ner_root)
    sents = _sentences(seed=2)
    table = _oracle_for(sents)
    pred = predict_tags(OracleModel(table), sents, ChunkTokenizer(), LABELS, cfg.data, batch_size=3, precision="fp32")
    assert [len(p) for p in pred] == [len(s.words) for s in sents]
    tok = ChunkTokenizer()
    for s, p in zip(sents, pred):
        ids, index = tok.encode_words(s.words)
        first = {w: ids[j] for j, w in reversed(list(enumerate(index)))}
        assert p == [LABELS.tag(table[first[w]]) for w in range(len(s.words))]


class FullThenIndex(nn.Module):
    """The model's full (B, T, K) logits, indexed afterwards: what ``select`` must equal."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, select=None):
        logits = self.model(input_ids, attention_mask)  # (B, T, K)
        return logits if select is None else logits[select]


def test_predictions_with_the_encoders_selection_equal_the_full_logits(ner_root):
    """predict_words asks our encoder for the owned first pieces only (its last layer skips the
    rest): the same tag and the same loss per word as from the full logits, windows included."""
    from models.encoder import XLMRConfig
    from models.heads import XLMRForTokenClassification
    from tasks.ner import predict_words

    config = XLMRConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=80)
    torch.manual_seed(0)
    model = XLMRForTokenClassification(config, K)
    model.init_weights()
    torch.nn.init.normal_(model.classifier.weight)  # tags that differ from word to word
    sents = _sentences(seed=3)  # with 60-word sentences: several windows
    args = (ChunkTokenizer(), LABELS, _cfg(ner_root).data, 3, "fp32")
    tags, losses = predict_words(model, sents, *args)
    want_tags, want_losses = predict_words(FullThenIndex(model), sents, *args)
    assert tags == want_tags and len({t for row in tags for t in row}) > 1
    assert [len(r) for r in losses] == [len(s.words) for s in sents]
    torch.testing.assert_close(torch.tensor([x for r in losses for x in r]),
                               torch.tensor([x for r in want_losses for x in r]), rtol=1e-5, atol=1e-5)


def test_evaluate_reports_dev_f1_and_keeps_no_weights(ner_root):
    cfg = _cfg(ner_root)
    task = NERTask(cfg, ChunkTokenizer(), LABELS)
    dev = task.dev["de"]
    perfect_enough = OracleModel(_oracle_for(dev))
    out = task.evaluate(perfect_enough)
    assert set(out) == {"dev_f1", "dev_f1_de"} and out["dev_f1"] == out["dev_f1_de"] > 0.2
    pred = predict_tags(perfect_enough, dev, ChunkTokenizer(), LABELS, cfg.data, precision="fp32")
    assert out["dev_f1"] == entity_f1([s.tags for s in dev], pred)
    worse = task.evaluate(OracleModel({}))  # predicts O everywhere -> F1 0
    assert worse["dev_f1"] == 0.0
    # The best weights live in best.pt (core.loop), never in the task: a resumed run sees the same.
    assert not any(torch.is_tensor(v) or isinstance(v, dict) and any(map(torch.is_tensor, v.values()))
                   for v in vars(task).values())


def test_first_piece_view_packs_owned_positions():
    emissions = torch.arange(2 * 5 * 1, dtype=torch.float).view(2, 5, 1)  # (B, T, K)
    word_ids = torch.tensor([[-1, 0, -1, 1, -1], [-1, -1, 0, -1, -1]])
    packed, mask, positions = first_piece_view(emissions, word_ids)
    assert positions[:, :2].tolist() == [[1, 3], [2, 0]] and mask.tolist() == [[True, True], [True, False]]
    assert packed[0, :, 0].tolist() == [1.0, 3.0] and packed[1, 0, 0].item() == 7.0


def test_crf_head_loss_and_decoding(ner_root):
    import models.crf as crf_module

    cfg = _cfg(ner_root)
    task = NERTask(cfg, ChunkTokenizer(), LABELS)
    table = torch.randn(100, K)
    model = CRFTagger(OracleModel({}), crf_module.CRF(K, labels=list(LABELS.tags)))
    model.tagger.table.data = table
    batch = next(iter(task.train_batches(epoch=0)))
    expected = torch.zeros(())
    for b in range(batch["input_ids"].size(0)):  # one window at a time, owned first pieces in order
        pos = (batch["word_ids"][b] >= 0).nonzero().flatten()
        if len(pos):
            emissions = table[batch["input_ids"][b, pos]].unsqueeze(0)  # (1, W, K)
            expected = expected + model.crf(emissions, batch["labels"][b, pos].unsqueeze(0), reduction="sum")
    torch.testing.assert_close(task.loss(model, batch), expected, rtol=1e-5, atol=1e-4)
    pred = predict_tags(model, task.dev["de"], ChunkTokenizer(), LABELS, cfg.data, precision="fp32")
    for row in pred:  # decoding applies the BIO constraints: no O -> I-X, no start -> I-X
        for prev, tag in zip(["O"] + row, row):
            assert not (tag.startswith("I-") and prev[2:] != tag[2:])
    assert [len(p) for p in pred] == [len(s.words) for s in task.dev["de"]]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """One tiny random checkpoint for the end-to-end tests (what model.tiny_random writes)."""
    from conftest import require_data
    from core.paths import data_root
    from data.conll import read_conll
    from tasks.ner import write_tiny_checkpoint

    require_data(data_root())  # skip, or fail in CI
    path = data_root() / "panx/de/train.conllu"
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", read_conll(path)[:2000])


def _tiny_overrides(tmp_path, data_root, tiny_model):
    return [f"data.root={data_root}", f"model.name_or_path={tiny_model}",
            f"train.out_dir={tmp_path}/{{name}}", "data.max_train_sentences=96", "data.max_eval_sentences=24",
            "data.max_test_sentences=24", "data.max_length=24", "data.stride=6", "train.epochs=1",
            "train.batch_size=16", "train.lr=3e-3", "train.log_every=100"]


def test_train_then_evaluate_end_to_end(tmp_path, data_root, tiny_model, capsys):
    import evaluate
    import train

    args = ["configs/tiny_ner.yaml", *_tiny_overrides(tmp_path, data_root, tiny_model), "data.eval_langs=[de, it]"]
    assert train.main(args) == 0
    run = tmp_path / "tiny_ner"
    results = json.loads((run / "results.json").read_text())
    assert set(results["rows"]["tiny_ner"]) == {"de", "it"}
    assert (run / "model/config.json").is_file() and (run / "results.md").is_file()
    # evaluate.py reloads the saved model and gets the same test F1 on the same sentences
    model, tokenizer, labels, cfg = evaluate.load_trained(run)
    assert cfg.data.max_test_sentences == 24
    capsys.readouterr()
    assert evaluate.main([str(run), "--langs", "de,it"]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("| tiny_ner |"))
    assert row == "| tiny_ner | " + " | ".join(f"{100 * results['rows']['tiny_ner'][k]:.1f}" for k in ("de", "it")) + " |"


def test_fewshot_run_writes_one_model_per_size_and_a_curve(tmp_path, data_root, tiny_model):
    import train

    args = ["configs/tiny_ner.yaml", *_tiny_overrides(tmp_path, data_root, tiny_model), "data.max_train_sentences=32",
            "data.fewshot_lang=fr", "data.fewshot_sizes=[8, 16]", "data.eval_langs=[fr]", "train.name=fs"]
    assert train.main(args) == 0
    run = tmp_path / "fs"
    curve = json.loads((run / "results.json").read_text())["curve"]
    assert list(curve) == ["8", "16"] and (run / "curve.png").is_file()
    assert (run / "k8/model/config.json").is_file() and (run / "k16/results.json").is_file()


def test_missing_checkpoint_fails_before_any_work(tmp_path, data_root, capsys):
    import train

    code = train.main(["configs/mini_zeroshot_de.yaml", f"data.root={data_root}",
                       f"model.name_or_path={tmp_path / 'no_model'}", f"train.out_dir={tmp_path}/{{name}}"])
    err = capsys.readouterr().err
    assert code == 2 and "no checkpoint at" in err and "mini_pretrain" in err
    assert not (tmp_path / "mini_zeroshot_de").exists()


def _rank_early_evals_best(monkeypatch):
    """dev_f1 := minus the classifier's weight norm, a function of the weights alone (so a resumed run
    scores exactly as the uninterrupted one) that is best early: the best checkpoint is not the last."""
    original = NERTask.evaluate

    def evaluate(self, model):
        out = original(self, model)
        out["dev_f1"] = -float(model.classifier.weight.norm())
        return out
    monkeypatch.setattr(NERTask, "evaluate", evaluate)


def _crash_at(monkeypatch, epoch: int, index: int):
    original = NERTask.train_batches

    def train_batches(self, e, rank=0, world=1):
        for i, batch in enumerate(original(self, e, rank, world)):
            if (e, i) == (epoch, index):
                raise KeyboardInterrupt("killed")
            yield batch
    monkeypatch.setattr(NERTask, "train_batches", train_batches)


def _outputs(run):
    results = json.loads((run / "results.json").read_text())
    results.pop("export", None)  # names the command and folder that made it
    return results, (run / "model" / "model.safetensors").read_bytes()


def test_killed_and_resumed_ner_run_writes_what_the_uninterrupted_run_writes(tmp_path, data_root, tiny_model,
                                                                             monkeypatch):
    """results.json (best dev F1, test F1 of the best weights) and model/ after kill + --resume equal
    the uninterrupted run's; so do those of resuming the finished run; metrics.jsonl has each step once."""
    import train

    _rank_early_evals_best(monkeypatch)
    common = [*_tiny_overrides(tmp_path, data_root, tiny_model), "data.max_train_sentences=32", "train.epochs=2",
              "data.max_eval_sentences=12", "data.max_test_sentences=12", "data.eval_langs=[de]",
              "train.batch_size=8", "train.eval_every=3", "train.log_every=1", "train.name=res"]
    full = ["configs/tiny_ner.yaml", *common, f"train.out_dir={tmp_path}/full/{{name}}"]
    cut = ["configs/tiny_ner.yaml", *common, f"train.out_dir={tmp_path}/cut/{{name}}"]
    assert train.main(full) == 0
    expected = _outputs(tmp_path / "full" / "res")
    best_step = torch.load(tmp_path / "full/res/best.pt", weights_only=True)["step"]
    last_step = torch.load(tmp_path / "full/res/last.pt", weights_only=True)["step"]
    assert best_step < last_step  # the best weights are not the last ones: the comparison can fail

    with monkeypatch.context() as m:
        _crash_at(m, epoch=1, index=2)
        assert train.main(cut) == 130  # an interrupt: one line, exit 130
    run = tmp_path / "cut" / "res"
    saved = torch.load(run / "last.pt", weights_only=True)["step"]
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(logged) > saved  # steps after the checkpoint were logged before the kill
    (run / ".last.pt.killed.tmp").write_bytes(b"half a save")
    assert train.main(cut + ["--resume"]) == 0
    assert _outputs(run) == expected
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == list(range(1, last_step + 1))
    assert not list(run.glob(".*.tmp"))

    assert train.main(cut + ["--resume"]) == 0  # resuming the finished run: same report, same weights
    assert _outputs(run) == expected
    assert json.loads((run / "results.json").read_text())["best_dev_f1"] != -1.0


def test_fewshot_sizes_each_start_from_the_pretrained_weights(tmp_path, data_root, tiny_model, monkeypatch):
    import train
    from tasks.ner import load_model

    built = []
    original = NERTask.build_model

    def build_model(self):
        model = original(self)
        built.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return model
    monkeypatch.setattr(NERTask, "build_model", build_model)
    args = ["configs/tiny_ner.yaml", *_tiny_overrides(tmp_path, data_root, tiny_model), "data.max_train_sentences=32",
            "data.fewshot_lang=fr", "data.fewshot_sizes=[8, 16]", "data.eval_langs=[fr]", "train.name=fs"]
    assert train.main(args) == 0
    cfg = load_config("configs/tiny_ner.yaml", args[1:])
    pretrained = load_model(cfg, K)[0].state_dict()
    k8_best = torch.load(tmp_path / "fs" / "k8" / "best.pt", weights_only=True)["model"]
    assert len(built) == 2
    for state in built:
        for name in pretrained:
            assert torch.equal(state[name], pretrained[name]), name
    assert not torch.equal(built[1]["classifier.weight"], k8_best["classifier.weight"])


def test_diverging_tiny_run_exits_3_and_exports_nothing(tmp_path, data_root, tiny_model, capsys):
    """train.lr=1e6 on the tiny model: the loss is NaN within a few steps; the run says so and exits 3;
    no model/ or results.json is written and every saved checkpoint is finite."""
    import train

    args = ["configs/tiny_ner.yaml", *_tiny_overrides(tmp_path, data_root, tiny_model), "train.lr=1e6",
            "train.max_steps=12", "train.log_every=3", "train.eval_every=3", "data.eval_langs=[de]", "train.name=nan"]
    assert train.main(args) == 3
    err = capsys.readouterr().err
    assert "NaN/infinite" in err and "Traceback" not in err
    run = tmp_path / "nan"
    assert not (run / "model").exists() and not (run / "results.json").exists()
    for name in ("last.pt", "best.pt"):
        if (run / name).exists():
            state = torch.load(run / name, weights_only=True)["model"]
            assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()), name
