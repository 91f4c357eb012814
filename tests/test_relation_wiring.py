"""How the relation task wires its parts: the span masks and marker positions its own batches carry,
each pooling mode's features for the right entity against a brute-force value, and the loss options
the config gives pinned by a hand computation."""
from __future__ import annotations

import math

import pytest
import torch

from core.config import load_config
from data.relation import CONLL04_RELATIONS, CONLL04_TYPES, NO_RELATION, Entity, RelationExample
from data.relation_batch import MODEL_INPUTS
from data.tokenizer import XLMRTokenizer
from models.encoder import XLMRConfig, XLMREncoder
from models.re_head import RelationClassifier
from tasks.relation import RelationTask

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = [NO_RELATION, *CONLL04_RELATIONS]
SENTENCES = ["Bill Gates works for Microsoft in Redmond .", "The firm Microsoft hired Annabelle Smithers last year ."]
TYPE_WORDS = {"Peop": "person", "Org": "organization", "Loc": "location"}  # the punctuation markers' words


def entity(sentence: str, word: str, etype: str) -> Entity:
    start = sentence.index(word)
    return Entity(word, start, start + len(word) - 1, etype)


def example(guid, s, subj, subj_type, obj, obj_type, label):
    sentence = SENTENCES[s]
    return RelationExample(guid, sentence, entity(sentence, subj, subj_type), entity(sentence, obj, obj_type), label)


EXAMPLES = [example("a", 0, "Bill Gates", "Peop", "Microsoft", "Org", "Work_For"),  # subject first
            example("b", 1, "Annabelle Smithers", "Peop", "Microsoft", "Org", "Work_For"),  # object first
            example("c", 0, "Microsoft", "Org", "Redmond", "Loc", "OrgBased_In"),
            example("d", 0, "Redmond", "Loc", "Bill Gates", "Peop", NO_RELATION),
            example("e", 1, "Microsoft", "Org", "Annabelle Smithers", "Peop", NO_RELATION)]


@pytest.fixture(scope="module")
def tokenizer():
    text = SENTENCES * 20 + ["@ * person * # ^ organization ^ location"] * 20
    return XLMRTokenizer.train(text, 70, None, character_coverage=1.0, num_threads=1)


def make_task(tokenizer, pooling: str, overrides: list[str] = ()):
    cfg = load_config(None, ["task=relation", "relation.dataset=conll04", f"relation.pooling={pooling}",
                             "relation.marker=typed_entity_marker_punct", "relation.max_length=64",
                             "train.batch_size=8", *overrides])
    config = XLMRConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=80, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    encoder = XLMREncoder(config)
    encoder.init_weights(torch.Generator().manual_seed(0))
    model = RelationClassifier(encoder, len(NAMES), pooling, dropout=0.0)
    gen = torch.Generator().manual_seed(1)
    for p in model.pooler.parameters():  # attention queries away from zero: not the span mean
        p.data = torch.randn(p.shape, generator=gen)
    splits = {s: list(EXAMPLES) for s in ("train", "dev", "test")}
    return RelationTask(cfg, splits, NAMES, list(CONLL04_TYPES), [], model, tokenizer, {}), model.eval()


def locate(ids: list[int], tokenizer, opening: str, word: str) -> tuple[int, list[int]]:
    """(position of the opening marker's first piece, positions of the entity's pieces), found by trying
    every start: the opening marker's pieces directly followed by the word's own pieces."""
    open_ids = tokenizer.encode(opening, add_special_tokens=False)
    word_ids = tokenizer.encode(word, add_special_tokens=False)
    hits = [s for s in range(len(open_ids), len(ids))
            if ids[s - len(open_ids):s] == open_ids and ids[s:s + len(word_ids)] == word_ids]
    assert len(hits) == 1, (opening, word, hits)
    return hits[0] - len(open_ids), list(range(hits[0], hits[0] + len(word_ids)))


def brute_force(mode: str, h: torch.Tensor, marker: int, span: list[int], query: torch.Tensor | None):
    rows = [h[t] for t in span]
    if mode == "start":
        return h[marker]
    if mode == "mean":
        return sum(rows) / len(rows)
    if mode == "max":
        return torch.stack([torch.tensor([max(float(r[k]) for r in rows) for k in range(h.size(1))])])[0]
    scores = [float(r @ query.detach()) / math.sqrt(h.size(1)) for r in rows]  # attention
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    return sum(w / sum(weights) * r for w, r in zip(weights, rows))


@pytest.mark.parametrize("mode", ["cls", "start", "mean", "max", "attention"])
def test_each_pooling_reads_the_right_entity_of_the_tasks_own_batches(tokenizer, mode):
    task, model = make_task(tokenizer, mode)
    [index] = task.sampler.batches(0)  # the order train_batches uses
    [batch] = list(task.train_batches(0))
    assert batch["labels"].tolist() == [task.gold["train"][i] for i in index]
    seen = {}
    model.mlp.register_forward_pre_hook(lambda module, args: seen.update(feats=args[0]))
    with torch.no_grad():
        model(*(batch[k] for k in MODEL_INPUTS))
        h = model.encoder(batch["input_ids"], batch["attention_mask"])  # (B, T, H): every position
    for b, i in enumerate(index):
        ex, ids = EXAMPLES[i], batch["input_ids"][b].tolist()
        subj_marker, subj_span = locate(ids, tokenizer, f"@ * {TYPE_WORDS[ex.subj.type]} *", ex.subj.word)
        obj_marker, obj_span = locate(ids, tokenizer, f"# ^ {TYPE_WORDS[ex.obj.type]} ^", ex.obj.word)
        assert batch["subj_mask"][b].nonzero().flatten().tolist() == subj_span  # exactly the entity's pieces
        assert batch["obj_mask"][b].nonzero().flatten().tolist() == obj_span
        assert (int(batch["subj_marker"][b]), int(batch["obj_marker"][b])) == (subj_marker, obj_marker)
        if mode == "cls":
            want = h[b, 0]
        else:
            q_subj = q_obj = None
            if mode == "attention":
                q_subj, q_obj = model.pooler.subj_attention.query, model.pooler.obj_attention.query
            want = torch.cat([brute_force(mode, h[b], subj_marker, subj_span, q_subj),
                              brute_force(mode, h[b], obj_marker, obj_span, q_obj)])
        assert torch.allclose(seen["feats"][b], want, atol=1e-5), (mode, ex.guid)


def hand_loss(logits: torch.Tensor, labels: list[int], gamma: float, alpha, smoothing: float, weights) -> float:
    """loss_i = w[y_i] * sum_k q_ik * alpha_k * (1 - p_ik) ** gamma * -log p_ik, summed over the batch."""
    total, K = 0.0, logits.size(1)
    for row, y in zip(logits.tolist(), labels):
        z = [math.exp(v - max(row)) for v in row]
        p = [v / sum(z) for v in z]
        q = [(1 - smoothing) * (k == y) + smoothing / K for k in range(K)]
        a = alpha if isinstance(alpha, list) else [alpha] * K
        total += (weights[y] if weights else 1.0) * sum(q[k] * a[k] * (1 - p[k]) ** gamma * -math.log(p[k])
                                                          for k in range(K))
    return total


def hand_class_weights(gold: list[int], power: float) -> list[float]:
    counts = [gold.count(k) for k in range(len(NAMES))]
    raw = [max(c, 1) ** -power for c in counts]
    mean = sum(raw[y] for y in gold) / len(gold)  # the training examples' mean weight is 1
    return [w / mean for w in raw]


ALPHA = [0.5, 1.0, 2.0, 0.25, 1.5, 0.75]
LOSS_CASES = {  # overrides -> (gamma, alpha, smoothing, class-weight power or None) the loss must use
    "ce ignores gamma and alpha": (["relation.loss=ce", "relation.focal_gamma=2", "relation.focal_alpha=[0.25]",
                                    "relation.label_smoothing=0.1", "relation.class_weights=inverse"],
                                   (0.0, 1.0, 0.1, 1.0)),
    "focal, alpha per class": (["relation.loss=focal", "relation.focal_gamma=2",
                                "relation.focal_alpha=[" + ",".join(map(str, ALPHA)) + "]",
                                "relation.label_smoothing=0.05", "relation.class_weights=inverse_sqrt"],
                               (2.0, ALPHA, 0.05, 0.5)),
    "focal, scalar alpha": (["relation.loss=focal", "relation.focal_gamma=1.5", "relation.focal_alpha=[0.25]"],
                            (1.5, 0.25, 0.0, None)),
}


@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_the_loss_gets_the_configured_options(tokenizer, case):
    overrides, (gamma, alpha, smoothing, power) = LOSS_CASES[case]
    task, model = make_task(tokenizer, "mean", overrides)
    [batch] = list(task.train_batches(0))
    with torch.no_grad():
        got = float(task.loss(model, batch))
        logits = model(*(batch[k] for k in MODEL_INPUTS))  # (B, K)
    weights = hand_class_weights(task.gold["train"], power) if power is not None else None
    want = hand_loss(logits, batch["labels"].tolist(), gamma, alpha, smoothing, weights)
    assert got == pytest.approx(want, rel=1e-5)


def test_the_predictor_decodes_as_the_run_chose(tokenizer):
    """RelationPredictor.probs: the type constraint of relation.json masks the relations its type pair never
    took, the prior offset moves the no_relation logit, then the temperature divides: a hand computation
    on logits of each example scored alone."""
    from data.markers import MarkerEncoder
    from data.relation_batch import collate_relations
    from tasks.relation_predict import RelationPredictor

    _, model = make_task(tokenizer, "start")
    allowed = {"Peop-Org": [True, True, False, False, False, False], "Org-Loc": [True, False, False, True, False, True]}
    meta = {"labels": NAMES, "marker": "typed_entity_marker_punct", "max_length": 64, "type_words": {},
            "special_ids": {}, "constraint": allowed, "prior_offset": -0.75, "temperature": 2.5}
    got = RelationPredictor(model, tokenizer, meta).probs(EXAMPLES)  # (N, K)
    encoder = MarkerEncoder(tokenizer, "typed_entity_marker_punct", 64)
    for n, ex in enumerate(EXAMPLES):
        with torch.no_grad():
            logits = model(*(collate_relations([encoder.encode(ex)], None, tokenizer.pad_id)[k]
                             for k in MODEL_INPUTS))[0].tolist()  # (K,)
        mask = allowed.get(f"{ex.subj.type}-{ex.obj.type}", [True] * len(NAMES))  # an unseen pair allows all
        scores = [(v + (-0.75 if k == 0 else 0.0)) / 2.5 if mask[k] else -math.inf for k, v in enumerate(logits)]
        z = [math.exp(s - max(scores)) for s in scores]
        assert got[n].tolist() == pytest.approx([v / sum(z) for v in z], abs=1e-6), ex.guid
    assert got[0, 2:].eq(0).all() and got[3].gt(0).all()  # Peop-Org masked; Loc-Peop never seen: nothing masked


@pytest.mark.parametrize("constraint, prior, temperature", [(False, False, False), (True, False, True),
                                                            (False, True, False), (True, True, True)])
def test_the_decoding_flags_choose_the_variant_scored_and_exported(tokenizer, constraint, prior, temperature):
    """relation.type_constraint / prior_correction / temperature pick the headline variant, and relation.json
    gets the offset fitted for that variant (the constrained one when both are on) and the temperature."""
    from models.re_decoding import apply_constraint, calibrate_and_score, with_prior_offset

    flags = [f"relation.type_constraint={str(constraint).lower()}", f"relation.prior_correction={str(prior).lower()}",
             f"relation.temperature={str(temperature).lower()}"]
    task, model = make_task(tokenizer, "start", flags)
    d = task.decode_and_score(model)
    assert d["chosen"] == {(0, 0): "raw", (1, 0): "constraint", (0, 1): "prior", (1, 1): "constraint+prior"}[
        (constraint, prior)]
    test = task.logits(model, "test")
    offset = d["prior_offset_constrained"] if constraint else d["prior_offset"]
    want = apply_constraint(test, task.pairs["test"], task.constraint) if constraint else test
    want = with_prior_offset(want, offset if prior else 0.0) / (d["temperature"] if temperature else 1.0)
    assert torch.equal(d["final_logits"], want)
    meta = task.export_meta(d)
    assert meta["prior_offset"] == (offset if prior else 0.0)
    assert meta["temperature"] == (d["temperature"] if temperature else 1.0)
    assert (meta["constraint"] is not None) == constraint
    direct = calibrate_and_score(task.logits(model, "dev"), test, task.gold["dev"], task.gold["test"],
                                 task.pairs["dev"], task.pairs["test"], task.constraint, constraint, prior, temperature)
    assert direct["variants"] == d["variants"]
