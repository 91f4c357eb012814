"""Model cards: the README.md of an exported model folder, in the Hugging Face Hub's convention.

    card = ModelCard(title="mini_zeroshot_de", summary="German NER ...", languages=["de", "en"],
                     datasets=["unimelb-nlp/wikiann"], tags=["token-classification"],
                     scores={"de": {"test entity F1": 0.764}}, command="python train.py configs/x.yaml",
                     usage_here="...", usage_transformers="...", limits=["..."])
    save_pretrained(model, tokenizer, out_dir, id2label=..., card=card)   # writes out_dir/README.md

The card is YAML front matter (language, tags, datasets, metrics, pipeline_tag, library_name and
a model-index with the scores, which the Hub shows as a results widget) followed by markdown: what
the model is, what it was trained on, its scores, the command that made it, how to load it here
and in transformers, and what it cannot do. Any system fills the same fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import yaml


@dataclass
class ModelCard:
    title: str
    summary: str  # one paragraph: what the model does
    languages: list[str] = field(default_factory=list)  # ISO 639-1 codes
    datasets: list[str] = field(default_factory=list)  # Hub dataset ids
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str = ""  # e.g. token-classification
    base_model: str = ""  # a Hub id; local paths are named in the text only
    training: str = ""  # markdown: data, sizes, settings
    # set-up or language -> {metric name: value in 0..1}; rendered x 100 and as the model-index
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    metric: str = "f1"  # the Hub metric type of the scores
    command: str = ""  # the shell command that made the model
    usage_here: str = ""  # markdown (code blocks included)
    usage_transformers: str = ""
    limits: list[str] = field(default_factory=list)
    extra: str = ""  # any further markdown, appended last

    def front_matter(self) -> dict:
        meta: dict = {"language": self.languages, "library_name": "transformers", "tags": self.tags,
                      "datasets": self.datasets, "metrics": [self.metric]}
        if self.pipeline_tag:
            meta["pipeline_tag"] = self.pipeline_tag
        if self.base_model and "/" in self.base_model and not self.base_model.startswith((".", "/", "~", "runs")):
            meta["base_model"] = self.base_model
        if self.scores:
            results = []
            for setting, metrics in self.scores.items():
                results.append({
                    "task": {"type": self.pipeline_tag or "other", "name": self.pipeline_tag or "other"},
                    "dataset": {"name": setting, "type": self.datasets[0] if self.datasets else "other"},
                    "metrics": [{"type": self.metric if self.metric in name.lower() else name.lower().replace(" ", "_"),
                                 "name": name, "value": round(100 * value, 2)}
                                for name, value in metrics.items()]})
            meta["model-index"] = [{"name": self.title, "results": results}]
        return {k: v for k, v in meta.items() if v}

    def render(self) -> str:
        head = yaml.safe_dump(self.front_matter(), sort_keys=False, allow_unicode=True)
        out = [f"---\n{head}---\n", f"# {self.title}\n", self.summary.strip() + "\n"]
        if self.training:
            out += ["## Training\n", self.training.strip() + "\n"]
        if self.scores:
            names = list(dict.fromkeys(name for metrics in self.scores.values() for name in metrics))
            table = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
            for setting, metrics in self.scores.items():
                cells = [f"{100 * metrics[n]:.1f}" if n in metrics else "-" for n in names]
                table.append(f"| {setting} | " + " | ".join(cells) + " |")
            out += ["## Scores (x 100)\n", "\n".join(table) + "\n"]
        if self.command:
            out += ["## How it was made\n", f"```bash\n{self.command.strip()}\n```\n"]
        if self.usage_here:
            out += ["## Use it with this repository\n", self.usage_here.strip() + "\n"]
        if self.usage_transformers:
            out += ["## Use it with transformers\n", self.usage_transformers.strip() + "\n"]
        if self.limits:
            out += ["## Limits\n", "\n".join(f"- {item.strip()}" for item in self.limits) + "\n"]
        if self.extra:
            out.append(self.extra.strip() + "\n")
        return "\n".join(out)


def read_front_matter(text: str) -> dict:
    """The YAML front matter of a card (safe_load: plain data only)."""
    if not text.startswith("---\n"):
        raise ValueError("a model card starts with a '---' line")
    end = text.index("\n---\n", 4)
    return yaml.safe_load(text[4:end]) or {}


# Hub dataset ids of the data folders the configs read (data.layout's first path part).
DATASET_IDS = {"panx": "unimelb-nlp/wikiann", "wikineural": "Babelscape/wikineural"}
DATA_LICENSES = {"panx": "WikiANN / PAN-X, from Wikipedia (CC BY-SA)",
                 "wikineural": "WikiNEuRal (CC BY-NC-SA 4.0: non-commercial)"}


def ner_card(cfg, results: dict | None, decoding: dict | None, command: str, crf: bool,
             model_dir: str = "MODEL_DIR", pipeline_split_words: float | None = None) -> ModelCard:
    """The card of an exported NER model. cfg: the run's core.config.Config; results: its
    results.json payload (test scores; None before testing); decoding: the argmax-vs-Viterbi
    measurement of a CRF model (tasks/ner.py::save_trained)."""
    d, m, t = cfg.data, cfg.model, cfg.train
    train_langs = list(d.train_langs) + ([d.fewshot_lang] if d.fewshot_lang else [])
    langs = list(dict.fromkeys(train_langs + list(d.eval_langs)))
    folders = list(dict.fromkeys(d.layout.get(lang, "").split("/")[0] for lang in langs))
    head = "a CRF over each word's first piece" if crf else "a linear layer (argmax per word)"
    summary = (f"Named-entity recognition (PER, ORG, LOC in IOB2) with `{m.name_or_path}` fine-tuned on "
               f"{', '.join(train_langs)} and {head}; tested zero-shot or in-language on {', '.join(d.eval_langs)}. "
               "Made by this repository's `train.py` (plain PyTorch); the folder is in the Hugging Face layout "
               "with the tag names in `config.json`.")
    sizes = f"{d.max_train_sentences} sentences (fixed-seed sample)" if d.max_train_sentences else "all sentences"
    training = "\n".join([
        f"- base model: `{m.name_or_path}`{' (random init)' if m.from_scratch else ''}; head: {m.head}",
        f"- training data (under the data root): "
        f"{', '.join(d.layout.get(lang, lang).format(lang=lang, split='train') for lang in d.train_langs)}"
        f" ({sizes}{', mix ' + str(d.mix) if d.mix else ''})"
        + (f" + {d.fewshot_lang} few-shot sentences" if d.fewshot_lang else ""),
        f"- {t.epochs} epochs, batch {t.batch_size} x {t.accum_steps} accumulation, lr {t.lr}, "
        f"weight decay {t.weight_decay}, seed {t.seed}, precision {t.precision}"
        + (" (bf16 autocast where the CPU/GPU has fast bf16, else fp32)" if t.precision == "auto" else ""),
        f"- windows of {d.max_length} pieces (stride {d.stride}); loss on each word's first piece",
        f"- the exported weights are the best-dev checkpoint"
        + (f" (dev entity F1 {100 * results['best_dev_f1']:.1f})" if results and "best_dev_f1" in results else ""),
    ])
    scores = {}
    for lang, s in ((results or {}).get("test") or {}).items():
        scores[f"{lang} test"] = {"entity F1": s["f1"], "precision": s["precision"], "recall": s["recall"]}
    usage_here = (
        "```bash\n"
        f"python evaluate.py RUN_DIR --predict in.txt --out entities.jsonl   # RUN_DIR holds this folder as model/\n"
        f"echo 'Angela Merkel besucht Paris' | python evaluate.py RUN_DIR --predict - --format jsonl\n"
        "```\n\n```python\n"
        "from evaluate import load_model_dir\n"
        f"model, tokenizer, labels = load_model_dir(\"{model_dir}\")"
        f"   # {'CRFTagger (Viterbi decoding)' if crf else 'XLMRForTokenClassification'}\n```")
    usage_tf = (
        "```python\nfrom transformers import pipeline\n"
        f"ner = pipeline(\"token-classification\", model=\"{model_dir}\", aggregation_strategy=\"first\")\n"
        "ner(\"Angela Merkel besucht Paris\")   # [{'entity_group': 'PER', 'word': 'Angela Merkel', ...}, ...]\n```\n\n"
        "`aggregation_strategy=\"first\"` labels each word by its first piece, as training did.")
    limits = []
    if crf:
        if decoding:
            per = ", ".join(f"{lang} {100 * v:.1f} vs {100 * decoding['dev_f1_argmax'][lang]:.1f}"
                            for lang, v in decoding["dev_f1_viterbi"].items())
            limits.append(
                "transformers ignores `crf.safetensors` and decodes by argmax over the emission scores; our "
                f"Viterbi decoding (with the BIO constraints) scores {100 * decoding['difference']:+.1f} dev entity F1 "
                f"over argmax (measured at export on {decoding['sentences']} dev sentences; Viterbi vs argmax: {per}). "
                "Use this repository's loader for the scores above.")
        else:
            limits.append("transformers ignores `crf.safetensors` and decodes by argmax over the emission scores, "
                          "which differs from the Viterbi decoding the scores above come from.")
    if pipeline_split_words is not None:
        limits.append("transformers' pipeline finds words by a heuristic on piece offsets: a word whose first piece "
                      "is the bare marker `▁` is split in two there (and may get a second tag); "
                      f"{100 * pipeline_split_words:.2f}% of the dev words are such words for this vocabulary.")
    limits.append(f"sentences longer than {d.max_length} pieces are cut into overlapping windows here; the "
                  "transformers pipeline reads up to 512 pieces in one pass.")
    limits.append("scores on languages it was not trained on are zero-shot transfer and far below in-language "
                  "ones; the training data is Wikipedia text, other domains will score lower.")
    limits += [f"data: {DATA_LICENSES[f]}" for f in folders if f in DATA_LICENSES]
    return ModelCard(
        title=t.name, summary=summary, languages=langs, datasets=[DATASET_IDS[f] for f in folders if f in DATASET_IDS],
        tags=["token-classification", "ner", "xlm-roberta", "cross-lingual"] + (["crf"] if crf else []),
        pipeline_tag="token-classification", base_model=m.name_or_path, training=training, scores=scores,
        command=command, usage_here=usage_here, usage_transformers=usage_tf, limits=limits)
