"""Typed configuration: dataclass defaults are the schema, YAML holds what differs.

    cfg = load_config("configs/zeroshot_de.yaml", ["train.lr=3e-5", "data.eval_langs=[de,fr]"])

Order of precedence: dataclass defaults < YAML file < dotted command-line overrides.
Every key is checked against the schema; an unknown key is an error that names the
closest valid key. Values are checked against the field's type (YAML gives ints for
``3`` and floats for ``3e-5``; an int where a float is expected is accepted; a float must be
finite); an enum-like setting is a ``Literal[...]`` and a wrong value names the valid ones
(``'model.head' must be one of 'linear', 'crf'``). After the overrides, ``validate`` checks
value ranges (``_RULES``: lr >= 0, accum_steps >= 1, ...), the run name (one folder name) and
``out_dir`` (no placeholder but ``{name}``); every error is a ConfigError naming the key.
New sections may use ``Literal`` fields and append rules to ``_RULES``.

A dotted override that goes into a mapping field sets one key and keeps the others
(``data.layout.pl=panx/{lang}/{split}.conllu`` adds Polish beside the default languages);
giving the mapping itself replaces it whole (``data.layout={pl: 'panx/{lang}/{split}.conllu'}``;
the quotes keep YAML from reading the braces of ``{lang}`` as a mapping).
In a YAML file, a mapping field's value replaces the default mapping likewise.

YAML is read by a strict loader: a key given twice in one mapping is an error naming the file
and both lines; aliases may not refer to themselves, nor expand to more than
``MAX_YAML_VALUES`` values (a small file of nested aliases can stand for billions); values may
not nest deeper than ``MAX_YAML_DEPTH``; a file that is not UTF-8 is an error naming its line.
Values quoted in error messages are cut to about 200 characters.

Each section belongs to one part of the project: ``model`` (encoder and head),
``data`` (NER files, windows, sampling), ``train`` (the loop), ``profile``,
``mlm`` (pretraining the mini model), ``bilstm`` and ``mapping`` (zero-resource NER).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import string
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


@dataclass
class ModelConfig:
    name_or_path: str = "xlm-roberta-base"  # hub name or local folder in the HF layout
    head: Literal["linear", "crf", "bilstm_crf"] = "linear"  # crf: a CRF over first-piece positions;
    # bilstm_crf: frozen encoder -> BiLSTM (bilstm.hidden_size, bilstm.dropout) -> CRF (models/frozen_bilstm.py)
    classifier_dropout: float = 0.1
    attention: Literal["sdpa", "manual"] = "sdpa"  # same numbers; manual is for reading
    # reference = the hand-written modules as written (models/encoder.py, models/crf.py); fast = their fast
    # paths beside them (models/encoder_fast.py: packing, oneDNN fp32 linear, fast dropout, manual attention
    # while training with dropout or in bf16, on the CPU; models/crf_fast.py), the same numbers; auto = the
    # fast paths when train.device resolves to the CPU, else the reference, NER's CRF head too; the log names the encoder's.
    kernels: Literal["reference", "fast", "auto"] = "auto"
    from_scratch: bool = False  # random init with the checkpoint's config.json
    tiny_random: bool = False  # smoke runs: if name_or_path holds no checkpoint, write a tiny random one there


@dataclass
class DataConfig:
    root: str = ""  # "" -> $XLT_DATA_ROOT, else ../shared/data
    # Where each language's split files live, relative to root; {lang} and {split} are filled in.
    layout: dict[str, str] = field(default_factory=lambda: {
        "de": "panx/{lang}/{split}.conllu", "en": "panx/{lang}/{split}.conllu",
        "es": "panx/{lang}/{split}.conllu", "nl": "panx/{lang}/{split}.conllu",
        "ru": "panx/{lang}/{split}.conllu",
        "fr": "wikineural/{lang}/{split}.conllu", "it": "wikineural/{lang}/{split}.conllu",
    })
    url_template: str = ""  # download source for files missing under root, e.g. https://host/{lang}/{split}
    # File stem of each split: PAN-X calls the dev split "val".
    split_names: dict[str, str] = field(default_factory=lambda: {"train": "train", "dev": "val", "test": "test"})
    # Languages that ship one file only (WikiNEuRal fr/it: val.conllu); train/dev/test are carved from it
    # by a fixed-seed shuffle: the first carve_sizes.test sentences are test, the next carve_sizes.dev dev,
    # the rest train (data/sources.py::carve_split).
    val_only_langs: list[str] = field(default_factory=lambda: ["fr", "it"])
    carve_sizes: dict[str, int] = field(default_factory=lambda: {"test": 2000, "dev": 2000})
    carve_seed: int = 1234
    tag_map: dict[str, str] = field(default_factory=lambda: {"B-MISC": "O", "I-MISC": "O"})
    train_langs: list[str] = field(default_factory=lambda: ["de"])
    eval_langs: list[str] = field(default_factory=lambda: ["de"])
    mix: dict[str, float] = field(default_factory=dict)  # language -> share of the training set
    fewshot_lang: str = ""
    fewshot_sizes: list[int] = field(default_factory=list)  # nested subsets, e.g. [250, 500, 1000]
    max_train_sentences: int = 0  # 0 = all
    max_eval_sentences: int = 0  # dev sentences per language (fixed-seed sample); 0 = all
    max_test_sentences: int = 0  # test sentences per language (fixed-seed sample); 0 = all
    max_length: int = 128  # pieces per window, special tokens included
    stride: int = 32  # pieces shared by neighbouring windows of a long sentence
    label_all_pieces: bool = False  # False: label on the first piece only
    bucket: bool = True  # length-bucketed sampler


@dataclass
class TrainConfig:
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    epochs: float = 3.0
    max_steps: int = 0  # 0 = from epochs
    batch_size: int = 16  # sentences per micro-batch (per rank)
    accum_steps: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    clip_grad_norm: float = 1.0  # 0 = off
    lazy_embedding_decay: bool = True  # untouched embedding rows get their decay lazily
    lazy_embedding_min_rows: int = 10000  # only untied nn.Embedding with at least this many rows
    fused_adamw: bool = True  # torch's fused AdamW kernel (same update as foreach, several times faster on CPU)
    save_every: int = 0  # steps between last.pt saves; 0 = at each evaluation and at the end
    time_budget_minutes: float = 0.0  # 0 = no limit; else stop cleanly (and save) when reached
    resume: bool = False  # continue from run_dir/last.pt (train.py --resume sets it)
    # Resume although training-relevant settings differ from the ones saved in last.pt (train.py --resume-force);
    # off: such a resume is refused with the differing keys named (core/checkpoint.py::RESUME_IGNORED lists the
    # settings that may change freely).
    resume_allow_changes: bool = False
    eval_every: int = 0  # steps; 0 = at the end of each epoch
    log_every: int = 50
    save_best: bool = True  # keep the checkpoint with the best dev metric
    # What the run folder keeps after a successful export: "all" (last.pt with the optimizer state and best.pt
    # too, ~3.3 + 1.1 GB at base size, needed to resume) or "model" (model/ and the results only).
    keep: Literal["all", "model"] = "all"
    out_dir: str = "runs/{name}"
    name: str = ""  # "" -> the config file's stem


@dataclass
class ProfileConfig:
    enabled: bool = False
    wait: int = 1
    warmup: int = 1
    active: int = 3
    record_shapes: bool = False


@dataclass
class MLMConfig:
    text_files: list[str] = field(default_factory=list)  # relative to data.root
    vocab_size: int = 32000
    spm_input_sentences: int = 2_000_000
    mask_prob: float = 0.15  # 80% <mask>, 10% random, 10% kept
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    max_position_embeddings: int = 514
    seq_length: int = 128
    # The length of pretraining as a number of pieces: train.max_steps = ceil(pieces_budget / (batch_size x
    # accum_steps x seq_length x world)), set before config.yaml is written, so every machine trains the
    # same steps on the same pieces (batches stay fixed: no pacing). 0 = from max_steps or the time budget.
    pieces_budget: int = 0
    time_budget_minutes: float = 0.0  # 0 = no limit; stop cleanly when reached (with pieces_budget: a cap)
    # NER sentences pretrained on: language -> split (never test), read via data.sources.load_split.
    ner_splits: dict[str, str] = field(default_factory=dict)
    ner_repeat: int = 1  # each NER sentence appears this many times per pass over the text
    heldout_every: int = 100  # every N-th sentence of each source is held out for the MLM eval
    eval_sequences: int = 256  # packed held-out sequences scored by evaluate()
    dropout: float = 0.1  # hidden and attention dropout while pretraining
    export_dropout: float = 0.1  # the dropout written into the saved config.json (for fine-tuning)
    budget_reserve_seconds: float = 60.0  # kept free at the end of the budget for the final eval + export
    adaptive_threads: bool = True  # CPU: switch between 1 thread and all cores, whichever steps faster now
    pace_batches: bool = True  # with a budget: batch size follows the load so steps keep the planned duration
    # Code-switching of the NER sentences (data/code_switch.py): per epoch, each translatable word is
    # replaced with this probability by a translation into one other language chosen per sentence.
    code_switch_rate: float = 0.0
    code_switch_dicts: dict[str, str] = field(default_factory=dict)  # language -> dictionary to English (data.root)
    code_switch_sources: list[str] = field(default_factory=list)  # languages whose sentences are switched; [] = all
    code_switch_hub: str = ""  # set: every switch pairs with this language (the fine-tuning source); "" = any pair


@dataclass
class BiLSTMConfig:
    word_dim: int = 100
    char_dim: int = 30
    char_encoder: Literal["cnn", "lstm"] = "cnn"
    char_hidden: int = 50
    hidden_size: int = 200
    dropout: float = 0.5
    min_word_count: int = 1
    bio_constraints: bool = True
    lowercase: bool = False  # word lookup in lower case (characters keep the case)
    # "" = random word table over the training words; "sgns" = skip-gram vectors of the training
    # language (data/word_vectors.py, the mapping.vector_* settings) initialise it, and their words
    # join the vocabulary (needs lowercase: true, the vectors' keys)
    word_vectors: Literal["", "sgns"] = ""


@dataclass
class MappingConfig:
    source_lang: str = "de"
    target_lang: str = "en"
    vector_dim: int = 300
    seed_dictionary: str = ""  # relative to data.root; "" = identical strings
    refinement_steps: int = 5
    csls_k: int = 10
    adversarial: bool = False
    adversarial_epochs: int = 5  # discriminator/mapping rounds when adversarial (before Procrustes)
    test_dictionary: str = ""  # relative to data.root; word-translation P@1 is reported on it
    # Skip-gram with negative sampling on each language's monolingual text (data/word_vectors.py).
    vector_epochs: int = 5
    vector_window: int = 5
    vector_negatives: int = 5
    vector_min_count: int = 2
    vector_ngrams: list[int] = field(default_factory=list)  # [lo, hi]: + fastText-style char n-grams; [] = none
    max_vocab: int = 50000  # most frequent words kept for mapping and translation
    # Zero-resource stages (tasks/zeroresource.py); train.epochs is the source model's.
    target_epochs: float = 5.0
    max_pseudo_sentences: int = 0  # unlabelled target train sentences to pseudo-label; 0 = all
    weight_sharing: bool = True  # target model starts from the source model
    feature_augmentation: bool = True  # frozen source-model features concatenated
    length_schedule: bool = True  # stochastic schedule: short sentences first, longer ones more likely later
    target_lr: float = 0.0  # lr of the stage that starts from the source model (weight sharing); 0 = train.lr
    translate_mutual_only: bool = True  # translate a word only if it and its CSLS neighbour are mutual; else copy


@dataclass
class RelationConfig:
    """Relation extraction (tasks/relation.py): data set, entity markers, pooling, loss, decoding."""
    dataset: Literal["klue", "kbp37", "conll04"] = "klue"
    # KLUE-RE files under data.root: the labelled train rows (CSV, or the official JSON layout), dev.csv
    # (carved into test / dev / rest by klue_split_seed) and the relation names.
    klue_train: str = "klue_re/train_subset/val_predictions.csv"
    klue_dev: str = "klue_re/dev/dev.csv"
    klue_relations: str = "klue_re/official_KLUE-benchmark/relation_list.json"
    klue_test_size: int = 2000  # rows of dev.csv nothing trains or selects on
    klue_dev_size: int = 800  # rows of dev.csv for model selection and the prior / temperature fits
    klue_rest_to_train: bool = True  # the other rows of dev.csv join training
    klue_split_seed: int = 1234
    marker: Literal["entity_mask", "entity_marker", "entity_marker_punct", "typed_entity_marker",
                    "typed_entity_marker_punct"] = "typed_entity_marker_punct"
    type_words: dict[str, str] = field(default_factory=dict)  # type code -> word; {} = the data set's default
    pooling: Literal["cls", "start", "mean", "max", "attention"] = "start"
    mlp_hidden: int = 0  # 0 = the encoder's hidden size
    head_dropout: float = 0.1
    max_length: int = 160  # pieces, specials included; the window always keeps both entities
    loss: Literal["ce", "focal"] = "ce"
    focal_gamma: float = 2.0
    focal_alpha: list[float] = field(default_factory=list)  # [] = 1; one value = scalar; K values = per class
    label_smoothing: float = 0.0
    class_weights: Literal["none", "inverse", "inverse_sqrt"] = "none"
    negatives_per_positive: float = 0.0  # CoNLL04 training pairs: keep this many negatives per positive (0 = all)
    max_train_examples: int = 0  # seeded sample of the training examples (0 = all)
    max_dev_examples: int = 0  # seeded sample of the dev part for model selection (0 = all)
    max_test_examples: int = 0  # seeded sample of the test part: smoke runs only, never for a reported score
    # Decoding, measured on the test part with and without: the constraint masks relations whose
    # (subject type, object type) never occurs with them in training; the prior correction adds an offset
    # to the no_relation logit, tuned on the dev part; temperature scaling (fit on the dev part) before AUPRC.
    type_constraint: bool = False
    prior_correction: bool = False
    temperature: bool = False
    skip_bad_rows: bool = False  # count and report bad rows instead of stopping at the first


@dataclass
class ExtendConfig:
    """Vocabulary extension (tasks/extend.py, docs/EXTEND.md): new target-language pieces, grown rows,
    continual MLM (the mlm section's masking, sequence length and pieces_budget) from model.name_or_path."""
    # Target text: NER sentences (language -> split; train only) and files relative to data.root
    # ("path#column" for .csv/.tsv(.gz); globs allowed; data/text_sources.py).
    ner_splits: dict[str, str] = field(default_factory=dict)
    text_files: list[str] = field(default_factory=list)
    max_lines_per_file: int = 0  # first N lines of each text_files entry (0 = all)
    # Evaluation text (same spec format): a target or base line holding one of its lines is dropped.
    exclude_files: list[str] = field(default_factory=list)
    # Base-language text: its segmentation must not change; also the text mixed in (base_text_share).
    base_ner_splits: dict[str, str] = field(default_factory=dict)
    base_text_files: list[str] = field(default_factory=list)
    extend_vocab: bool = True  # false = the control: the same continual MLM without new pieces
    spm_vocab_size: int = 8000  # the target unigram model (fairseq ids, as mlm.vocab_size)
    new_pieces: int = 6000  # V_new: pieces added (an error if the text cannot give that many)
    select: str = "score"  # score | used (data/extend_vocab.py)
    init: str = "mean"  # random | mean | gaussian (models/extend.py) | wechsel | focus (models/extend_init.py)
    # wechsel / focus: skip-gram piece vectors (data/word_vectors.py) decide each new row's mix of base rows
    init_k: int = 10  # base rows mixed per new row (WECHSEL's 10)
    init_temperature: float = 0.1  # wechsel: softmax(cos / temperature) (WECHSEL's 0.1); focus uses sparsemax(cos)
    # wechsel: dictionary files under data.root (data/dictionaries.py spec: "a.txt,b.txt:reversed"), pairs
    # (base-language word, target word); "" = words spelt the same in both texts
    init_dictionary: str = ""
    init_vector_dim: int = 100
    init_vector_epochs: int = 5
    new_rows_steps: float = 0.0  # share of the steps with only the new rows (embedding + bias) trained
    base_text_share: float = 0.0  # share of the MLM sentences drawn from the base-language text


@dataclass
class AlignConfig:
    """Contextual alignment fine-tuning (tasks/align.py, docs/ALIGN.md): aligned words of each pair move
    to the anchor language's, whose words are held near the frozen original model."""
    anchor: str = "de"  # the language that stays put; the other side of every pair moves to it
    # "<lang>-<anchor>" -> [file of lang, file of anchor], line-aligned, relative to data.root
    train_pairs: dict[str, list[str]] = field(default_factory=lambda: {
        "en-de": ["multi30k/train.en", "multi30k/train.de"], "fr-de": ["multi30k/train.fr", "multi30k/train.de"]})
    dev_pairs: dict[str, list[str]] = field(default_factory=lambda: {  # retrieval on these picks best.pt
        "en-de": ["multi30k/val.en", "multi30k/val.de"], "fr-de": ["multi30k/val.fr", "multi30k/val.de"]})
    tokenized: bool = False  # true: words are split by spaces; false: data.parallel.split_words
    alignments: dict[str, str] = field(default_factory=dict)  # pair -> Pharaoh file for train_pairs; else fast_align here
    max_pairs: int = 0  # training sentence pairs per language pair (first N); 0 = all
    dev_max_pairs: int = 2000  # dev sentence pairs per language pair (first N): retrieval runs at every evaluation; 0 = all
    layer: int = -1  # the layer aligned (0 = embeddings, -1 = last)
    pooling: str = "mean"  # mean | first | last piece of a word
    loss: str = "l2"  # l2 (Cao et al. 2020) | infonce
    lam: float = 1.0  # weight of sum ||f(a) - f0(a)||^2 over the anchor words
    temperature: float = 0.1  # infonce only
    symmetrize: str = "intersect"  # intersect | grow-diag-final (then 1-to-1 links are kept)
    aligner_iterations: int = 5
    max_pieces: int = 128  # pieces per sentence; words past the cut are not aligned


@dataclass
class Config:
    task: str = "ner"  # ner | mlm | bilstm_crf | zeroresource | align
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    mlm: MLMConfig = field(default_factory=MLMConfig)
    bilstm: BiLSTMConfig = field(default_factory=BiLSTMConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    relation: RelationConfig = field(default_factory=RelationConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    extend: ExtendConfig = field(default_factory=ExtendConfig)


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML file at ``path``, then ``key.sub=value`` overrides."""
    cfg = Config()
    if path is not None:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
        raw = load_yaml(data, str(path)) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        _merge(cfg, raw, where=str(path))
        if not cfg.train.name:
            cfg.train.name = path.stem
    for item in overrides:
        key, sep, text = item.partition("=")
        where = f"override {_short(item)}"
        if not sep:
            raise ConfigError(f"{where}: expected key.sub=value")
        try:
            value = load_yaml(text, "", strict=False) if text else ""
        except ConfigError as err:  # one line, not a YAML traceback
            raise ConfigError(f"{where}: {_short(text)} is not a YAML value ({err}); "
                              f"quote it if it is meant as a string") from None
        parts, value = _into_mapping(cfg, key.strip().split("."), value, where)
        nested: Any = value
        for part in reversed(parts):
            nested = {part: nested}
        _merge(cfg, nested, where=where)
    validate(cfg, where=str(path) if path is not None else "config")
    return cfg


def _into_mapping(cfg: Config, parts: list[str], value: Any, where: str) -> tuple[list[str], Any]:
    """A dotted key that goes past a mapping field (``data.layout.pl``) sets that one key: returns
    the path to the field and the field's mapping with the key set; other keys are returned as given."""
    node: Any = cfg
    for i, part in enumerate(parts[:-1]):
        if not dataclasses.is_dataclass(node) or part not in {f.name for f in dataclasses.fields(node)}:
            return parts, value  # _merge names the unknown key
        node = getattr(node, part)
        if isinstance(node, dict):
            rest = parts[i + 1:]
            if len(rest) > 1:
                raise ConfigError(f"{where}: {'.'.join(parts[:i + 2])!r} is one value of the mapping "
                                  f"{'.'.join(parts[:i + 1])!r}, not a mapping itself")
            return parts[:i + 1], {**node, rest[0]: value}
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"{where}: {'.'.join(parts[:i + 1])!r} is a single value, not a section or mapping")
    return parts, value


# A config is a few hundred values; nested aliases could make a small file stand for billions.
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 64  # sections, mappings and lists inside each other


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue  # merge keys (<<) may be overridden by explicit keys, as YAML intends
                key = self.construct_object(key_node)
                if key in seen:
                    raise ConfigError(f"{{name}}{key_node.start_mark.line + 1}: duplicate key {_short(key)} "
                                      f"(first given on line {seen[key] + 1})")
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(data: bytes | str, name: str, strict: bool = True) -> Any:
    """One YAML document through the strict loader; every problem is a one-line ConfigError that
    starts with ``name`` (and the line where known). ``strict=False`` gives the bare reason."""
    prefix = f"{name}:" if name else "line "
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise ConfigError(f"{prefix}{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
                              f"a config is a YAML text file") from None
    if "\0" in data:
        line = data.count("\n", 0, data.index("\0")) + 1
        raise ConfigError(f"{prefix}{line}: a NUL byte: binary data, not YAML text")
    loader = None
    try:
        _check_depth(data)
        loader = _StrictLoader(data)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except ConfigError as err:
        raise ConfigError(str(err).replace("{name}", prefix)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 1 if mark is not None else \
            data.count("\n", 0, err.position) + 1 if isinstance(err, yaml.reader.ReaderError) else None
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        if not strict:
            raise ConfigError(problem) from None
        at = f"{prefix}{line}:" if line is not None else prefix
        raise ConfigError(f"{at} not valid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_depth(text: str) -> None:
    """Refuse collections nested deeper than MAX_YAML_DEPTH while streaming the parse, before the
    (recursive) composer sees them; PyYAML's scanner also slows down with every open level."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(f"{{name}}{event.start_mark.line + 1}: values nested more than {MAX_YAML_DEPTH} "
                                  f"deep; a config holds settings, not data")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expansion(root) -> None:
    """Refuse a document whose aliases refer to themselves or expand past MAX_YAML_VALUES values,
    before anything is built: each node's expanded size once, shared nodes memoised."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{{name}}{node.start_mark.line + 1}: a YAML alias that contains itself")
        active.add(key)
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_YAML_VALUES:
                raise ConfigError(f"{{name}}{node.start_mark.line + 1}: YAML aliases expand to more than "
                                  f"{MAX_YAML_VALUES:,} values; a config holds settings, not data")
        active.discard(key)
        sizes[key] = total
        return total

    size(root)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 8, 8, 160, 80


def _short(value: Any, limit: int = 200) -> str:
    """repr() of a value for an error message, cut to about ``limit`` characters whatever its size."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# (dotted key, test, what it must be): checked at load, after the overrides, so a bad value stops
# the run before any work with the key named. Types and Literal values are checked by _check_type.
_RULES = [
    ("train.lr", lambda v: v >= 0, ">= 0"),
    ("train.max_steps", lambda v: v >= 0, ">= 0 (0 = from train.epochs)"),
    ("train.batch_size", lambda v: v >= 1, ">= 1"),
    ("train.accum_steps", lambda v: v >= 1, ">= 1"),
    ("train.log_every", lambda v: v >= 1, ">= 1"),
    ("train.save_every", lambda v: v >= 0, ">= 0"),
    ("train.eval_every", lambda v: v >= 0, ">= 0"),
    ("train.weight_decay", lambda v: v >= 0, ">= 0"),
    ("train.warmup_ratio", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("train.clip_grad_norm", lambda v: v >= 0, ">= 0 (0 = off)"),
    ("train.adam_eps", lambda v: v > 0, "> 0"),
    ("train.adam_betas", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two values in [0, 1)"),
    ("train.time_budget_minutes", lambda v: v >= 0, ">= 0 (0 = no limit)"),
    ("model.classifier_dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("data.max_train_sentences", lambda v: v >= 0, ">= 0 (0 = all)"),
    ("data.max_eval_sentences", lambda v: v >= 0, ">= 0 (0 = all)"),
    ("data.max_test_sentences", lambda v: v >= 0, ">= 0 (0 = all)"),
    ("data.max_length", lambda v: v >= 3, ">= 3 (two special tokens and one piece)"),
    ("data.fewshot_sizes", lambda v: all(n >= 0 for n in v), "sizes >= 0 (0: the zero-shot reference)"),
    ("data.train_langs", lambda v: len(v) >= 1, "at least one language"),
    ("data.mix", lambda v: all(share > 0 for share in v.values()), "shares > 0 (a language -> its share)"),
    ("mlm.mask_prob", lambda v: 0 < v < 1, "in (0, 1)"),
    ("mlm.pieces_budget", lambda v: v >= 0, ">= 0"),
    ("mlm.time_budget_minutes", lambda v: v >= 0, ">= 0 (0 = no limit)"),
    ("mlm.dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("bilstm.dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("mapping.target_epochs", lambda v: v > 0, "> 0"),
    ("mapping.target_lr", lambda v: v >= 0, ">= 0 (0 = train.lr)"),
    ("mapping.vector_ngrams", lambda v: v == [] or (len(v) == 2 and 1 <= v[0] <= v[1]),
     "[] or [lo, hi] with 1 <= lo <= hi (char n-gram lengths)"),
]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")


def validate(cfg: Config, where: str = "config") -> None:
    """Value checks the types cannot express; a ConfigError names the key and what it must be."""
    for dotted, ok, must in _RULES:
        section, _, key = dotted.partition(".")
        value = getattr(getattr(cfg, section), key)
        if not ok(value):
            raise ConfigError(f"{where}: {dotted!r} must be {must}, got {_short(value)}")
    t = cfg.train
    if t.max_steps == 0 and t.epochs <= 0:
        raise ConfigError(f"{where}: 'train.epochs' must be > 0 when train.max_steps is 0, got {t.epochs!r}")
    strays = [lang for lang in cfg.data.mix if lang not in cfg.data.train_langs]
    if strays:
        raise ConfigError(f"{where}: 'data.mix' names {', '.join(map(repr, strays))}, not in data.train_langs "
                          f"{cfg.data.train_langs}")
    if not 0 <= cfg.data.stride < cfg.data.max_length - 2:
        raise ConfigError(f"{where}: 'data.stride' must be in [0, data.max_length - 2), got {cfg.data.stride!r}")
    if t.name and (not _NAME.fullmatch(t.name) or ".." in t.name):
        raise ConfigError(f"{where}: 'train.name' must be one folder name (letters, digits, . _ + = -, not "
                          f"starting with a dot, no path separators), got {_short(t.name)}")
    for _, field_name, spec, conversion in string.Formatter().parse(t.out_dir):
        if field_name is not None and (field_name != "name" or spec or conversion):
            raise ConfigError(f"{where}: 'train.out_dir' may hold only the placeholder {{name}}, "
                              f"got {_short(t.out_dir)}")


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


# Keys the schema lost -> the default they had: a file that still holds the default loads.
RETIRED_KEYS = {"data.num_workers": 0}


def _merge(node: Any, raw: dict, where: str, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(node))
    names = [f.name for f in dataclasses.fields(node)]
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in names and dotted in RETIRED_KEYS:
            if value == RETIRED_KEYS[dotted]:  # e.g. the config.yaml of a run folder written before it went
                continue
            raise ConfigError(f"{where}: {dotted!r} is no longer a setting (nothing read it); remove it")
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{where}: unknown key {dotted!r}{hint}")
        current = getattr(node, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {dotted!r} is a section; give it a mapping")
            _merge(current, value, where, prefix=f"{dotted}.")
        else:
            setattr(node, key, _check_type(value, hints[key], dotted, where))


def _check_type(value: Any, hint: Any, dotted: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:  # an enum-like setting: one of the listed values, exactly
        allowed = typing.get_args(hint)
        if any(value == a and type(value) is type(a) for a in allowed):
            return value
        raise ConfigError(f"{where}: {dotted!r} must be one of {', '.join(map(repr, allowed))}; got {_short(value)}")
    if hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:  # YAML 1.1 reads 3 as int and 1e-4 (no dot) as a string
            number = float(value)
        except ValueError:
            number = None
        if number is not None:
            if not math.isfinite(number):  # nan / inf (YAML .nan, .inf, or the strings) are never a setting
                raise ConfigError(f"{where}: {dotted!r} must be a finite number, got {_short(value)}")
            return number
    if origin in (list, dict):
        if not isinstance(value, origin):
            raise ConfigError(f"{where}: {dotted!r} must be a {origin.__name__}, got {_short(value)}")
        args = typing.get_args(hint)
        if origin is list:
            return [_check_type(v, args[0], f"{dotted}[{i}]", where) for i, v in enumerate(value)]
        return {_check_type(k, args[0], dotted, where): _check_type(v, args[1], f"{dotted}.{k}", where)
                for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            try:
                return _check_type(value, arm, dotted, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {dotted!r} has the wrong type: {_short(value)}")
    if hint is type(None):
        if value is None:
            return value
    elif isinstance(hint, type) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where}: {dotted!r} must be {name}, got {_short(value)}")
