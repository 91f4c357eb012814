"""The exported relation model: the encoder in the Hugging Face layout, the head beside it, the
decoding settings and the model card.

    export(run_dir / "model", model, tokenizer, meta, relation_card(cfg, result))

The folder: config.json (id2label = the relations), model.safetensors, the tokenizer (marker
tokens included), ``re_head.safetensors`` (pooling + MLP), ``relation.json`` (labels, markers,
pooling, window, the fitted decoding) and README.md. tasks/relation_predict.py loads it back.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

HEAD_FILE, META_FILE = "re_head.safetensors", "relation.json"


def export(out: Path, model, tokenizer, meta: dict, model_card=None) -> Path:
    """Write the folder; ``meta["labels"]`` are the relation names (id2label)."""
    from models.export import save_pretrained

    out.mkdir(parents=True, exist_ok=True)
    (out / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    head = {k: v.detach().float().contiguous() for k, v in model.head_state_dict().items()}
    save_pretrained(model.encoder, tokenizer, out, id2label=meta["labels"], card=model_card,
                    extra_tensors={HEAD_FILE: head})  # config.json last: the folder is complete when it is new
    return out


def relation_card(cfg, result: dict):
    """The README.md of the exported folder from the run's config and results.json."""
    from models.model_card import ModelCard

    r = cfg.relation
    lang = {"klue": ["ko"]}.get(r.dataset, ["en"])
    return ModelCard(
        title=cfg.train.name, languages=lang, tags=["relation-extraction"], pipeline_tag="text-classification",
        summary=(f"Sentence-level relation extraction on {r.dataset}: {r.marker} markers, {r.pooling} pooling, "
                 f"an MLP over the pooled entities (re_head.safetensors), {len(result['per_class_f1']) + 1} labels "
                 f"(id2label in config.json). The encoder alone loads in transformers; the head needs this repository."),
        training=f"Loss {r.loss} (gamma {r.focal_gamma}, smoothing {r.label_smoothing}), max_length {r.max_length}, "
                 f"examples {result['examples']}; decoding: {result['chosen']}.",
        scores={"test part": {"micro F1 (no_relation excluded)": result["test_micro_f1"] / 100,
                              "AUPRC": result["test_auprc"] / 100}},
        command="python train.py " + shlex.join(sys.argv[1:]) if Path(sys.argv[0]).name == "train.py" else "",
        usage_here="```python\nfrom tasks.relation_predict import RelationPredictor\n"
                   "pred = RelationPredictor.load(RUN_DIR)\npred.predict_one(sentence, (s0, s1), (o0, o1), 'PER', 'ORG')\n```",
        limits=["Mini-scale research model; scores are on a seeded test part, see RESULTS.md."])
