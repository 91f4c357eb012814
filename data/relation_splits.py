"""The relation task's train / dev / test parts, read from the files a ``relation`` config names.

    splits, names, types, bad = load_splits(cfg.relation, data_root, seed)

KLUE: the training file plus dev.csv carved by ``split_klue_dev`` (a guid in both is an error);
KBP37: its three files, label names from the training file; CoNLL04: its three files, training
negatives sampled (``negatives_per_positive``). The ``max_*_examples`` caps take seeded samples.
"""
from __future__ import annotations

import random
from pathlib import Path

from data.relation import (CONLL04_RELATIONS, CONLL04_TYPES, KLUE_TYPES, NO_RELATION, RelationExample,
                           kbp37_label_names, read_conll04, read_kbp37, read_klue_csv, read_klue_json,
                           read_relation_names, sample_negatives, split_klue_dev)


def load_splits(r, root: Path, seed: int) -> tuple[dict[str, list[RelationExample]], list[str], list[str], list[str]]:
    """({"train", "dev", "test"}: examples, label names, entity types, bad-row messages)."""
    bad: list[str] = []

    def keep(result):
        examples, skipped = result
        bad.extend(skipped)
        return examples

    opts = {"skip_bad_rows": r.skip_bad_rows, "return_bad": True}
    if r.dataset == "klue":
        names = read_relation_names(root / r.klue_relations)
        reader = read_klue_json if r.klue_train.endswith(".json") else read_klue_csv
        train = keep(reader(root / r.klue_train, names, **opts))
        test, dev, rest = split_klue_dev(keep(read_klue_csv(root / r.klue_dev, names, **opts)), r.klue_test_size,
                                         r.klue_dev_size, r.klue_split_seed)
        shared = {e.guid for e in train} & {e.guid for e in test + dev + rest}
        if shared:
            raise ValueError(f"{len(shared)} guids are in both the training file and dev.csv, e.g. {min(shared)}")
        splits = {"train": train + (rest if r.klue_rest_to_train else []), "dev": dev, "test": test}
        types = list(KLUE_TYPES)
    elif r.dataset == "kbp37":
        train = keep(read_kbp37(root / "kbp37/train.txt", **opts))
        names = kbp37_label_names(train)
        splits = {"train": train, **{s: keep(read_kbp37(root / f"kbp37/{s}.txt", names, **opts))
                                     for s in ("dev", "test")}}
        types = [""]
    else:
        names = [NO_RELATION, *CONLL04_RELATIONS]
        splits = {s: keep(read_conll04(root / f"conll04/conll04_{s}.json", **opts)) for s in ("train", "dev", "test")}
        splits["train"] = sample_negatives(splits["train"], r.negatives_per_positive, seed)
        types = list(CONLL04_TYPES)
    if r.max_train_examples and len(splits["train"]) > r.max_train_examples:
        splits["train"] = random.Random(seed).sample(splits["train"], r.max_train_examples)
    for split, cap in (("dev", r.max_dev_examples), ("test", r.max_test_examples)):
        if cap and len(splits[split]) > cap:
            splits[split] = random.Random(seed).sample(splits[split], cap)
    return splits, names, types, bad
