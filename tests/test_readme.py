"""The README's front door holds what it promises, and the documents' commands and links point at
things that exist: the first screen has set-up, the smoke run and a five-row headline table; every
command in a code block of README.md and docs/USAGE.md names an existing script and config; every
config is in docs/USAGE.md's table; the headline rows link to RESULTS.md sections that exist; the
Python snippet in docs/USAGE.md runs against a tiny local checkpoint; the documents name no work
sessions, issue numbers or job queues."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
USAGE = ROOT / "docs" / "USAGE.md"
RESULTS = ROOT / "RESULTS.md"
FIRST_SCREEN_LINES = 70  # one screen of a terminal or a browser window
CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """The body rows of the markdown table whose header line starts with header_start, as cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def config_names(cell: str) -> set[str]:
    """The configs a table cell names: `mini_re_klue`, `zeroresource_de_{en,nl,es}`, `multilingual_*`,
    `mini_zeroshot_de` (`_scratch`) and `x.yaml` forms."""
    names, previous = set(), ""
    for token in re.findall(r"`([^`]+)`", cell):
        token = token.removesuffix(".yaml")
        if token.startswith("_") and previous:  # (`_scratch`): a suffix of the name before it
            names.add(previous + token)
            continue
        brace = re.fullmatch(r"(.*)\{(.*)\}(.*)", token)
        if brace:
            names.update(f"{brace[1]}{alt}{brace[3]}" for alt in brace[2].split(","))
        elif "*" in token:
            pattern = re.compile(token.replace("*", ".*") + "$")
            matched = {name for name in CONFIGS if pattern.match(name)}
            assert matched, f"{token!r} matches no config"
            names.update(matched)
        elif re.fullmatch(r"[a-z0-9_]+", token):
            names.add(token)
        previous = token
    return names


def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_first_screen_has_set_up_smoke_run_and_the_headline_table():
    first = "\n".join(README.read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN_LINES])
    for needed in ("make setup", "make test", "python train.py configs/tiny_ner.yaml", "python train.py --list",
                   "| system | ours | reference | command | details |"):
        assert needed in first, f"{needed!r} is not on the README's first screen"
    assert "docs/img/strategies.png" in first


def test_headline_table_has_one_row_per_system_with_a_reference_command_and_link():
    text = README.read_text(encoding="utf-8")
    rows = table_rows(text, "| system | ours | reference | command | details |")
    systems = ["cross-lingual NER", "zero-resource NER", "vocabulary extension", "contextual alignment",
               "relation extraction"]
    assert len(rows) == len(systems)
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", RESULTS.read_text(encoding="utf-8"), flags=re.M)}
    for row, system in zip(rows, systems):
        name, ours, reference, command, link = row
        assert name.startswith(system)
        assert re.search(r"\d", ours) and re.search(r"\d", reference), row
        config = re.fullmatch(r"`python train.py configs/(\w+)\.yaml`", command)
        assert config and config[1] in CONFIGS, command
        anchor = re.fullmatch(r"\[RESULTS\]\(RESULTS\.md#([\w-]+)\)", link)
        assert anchor and anchor[1] in anchors, link


def test_config_tables_name_only_existing_configs_and_usage_lists_every_one():
    readme_rows = table_rows(README.read_text(encoding="utf-8"), "| config | what it does |")
    for row in readme_rows:
        for cell in (row[0], row[-1]):
            for name in config_names(cell):
                assert name in CONFIGS, f"README config table names {name!r}, which is not in configs/"
    usage_rows = table_rows(USAGE.read_text(encoding="utf-8"), "| config | what it does |")
    listed = set().union(*(config_names(row[0]) for row in usage_rows))
    assert listed <= set(CONFIGS), sorted(listed - set(CONFIGS))
    assert set(CONFIGS) <= listed, f"docs/USAGE.md's config table lacks {sorted(set(CONFIGS) - listed)}"


@pytest.mark.parametrize("doc", [README, USAGE], ids=lambda p: p.name)
def test_commands_in_code_blocks_name_existing_scripts_and_configs(doc):
    commands = [line.split("#")[0].strip() for block in code_blocks(doc.read_text(encoding="utf-8"), "bash")
                for line in block.splitlines()]
    commands = [c for c in commands if re.match(r"(echo .*\| )?(torchrun \S+ )?python ", c) or "train.py" in c]
    assert commands
    for command in commands:
        words = command.split()
        scripts = [w for w in words if w.endswith(".py")]
        assert scripts, command
        for script in scripts:
            assert (ROOT / script).is_file(), f"{doc.name}: {command!r} names {script}, which does not exist"
        for config in re.findall(r"configs/([\w{},]+)\.yaml", command):
            assert config in CONFIGS, f"{doc.name}: {command!r} names configs/{config}.yaml"
        if "train.py" in scripts:
            after = words[words.index("train.py") + 1:]
            positional = [w for w in after if not w.startswith("-") and "=" not in w]
            if positional and not positional[0].startswith("configs/"):
                assert positional[0] in CONFIGS, f"{doc.name}: {command!r}: no config named {positional[0]}"


@pytest.mark.parametrize("doc", [README, USAGE, RESULTS], ids=lambda p: p.name)
def test_linked_files_and_images_exist(doc):
    text = doc.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith("http"):
            continue
        base = ROOT if doc == README or doc == RESULTS else doc.parent
        assert (base / target).exists(), f"{doc.name} links {target}, which does not exist"


PRODUCT_DOCS = [README, RESULTS, USAGE] + [ROOT / "docs" / f"{name}.md" for name in
                                          ("NER", "MINI", "ZERORESOURCE", "EXTEND", "ALIGN", "RE")]
HISTORY = re.compile(r"\bsessions?\b|\bissues? #?\d|\bcpujob\b|\bjob queue|\bwork rounds?\b", flags=re.I)


@pytest.mark.parametrize("doc", PRODUCT_DOCS, ids=lambda p: p.name)
def test_documents_speak_of_the_product_not_of_how_it_was_made(doc):
    hits = [f"{doc.name}:{n}: {line.strip()[:80]}" for n, line in
            enumerate(doc.read_text(encoding="utf-8").splitlines(), 1) if HISTORY.search(line)]
    assert not hits, "work history belongs in commit messages:\n" + "\n".join(hits)


def test_usage_snippet_runs_against_a_tiny_checkpoint(tmp_path, monkeypatch):
    from data.conll import Sentence
    from tasks.ner import write_tiny_checkpoint

    sentences = [Sentence("Angela Merkel besucht Paris und Berlin".split(), []),
                 Sentence("Der Rhein fliesst durch Koeln".split(), [])] * 30
    write_tiny_checkpoint(tmp_path / "xlm-roberta-base", sentences, vocab_size=80)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (snippet,) = code_blocks(section(USAGE.read_text(encoding="utf-8"), "Getting xlm-roberta-base"), "python")
    scope: dict = {}
    exec(compile(snippet, "docs/USAGE.md", "exec"), scope)
    ids, mask, logits = scope["input_ids"], scope["attention_mask"], scope["logits"]
    tok = scope["tok"]
    assert ids[0, 0] == tok.bos_id and ids[0, -1] == tok.eos_id and mask.dtype == torch.bool and mask.all()
    assert logits.shape == (1, ids.shape[1], 7) and scope["tag_ids"].shape == (4,)
    pieces = tok.convert_ids_to_tokens(ids[0, scope["first"]].tolist())
    assert all(p.startswith("\u2581") for p in pieces)  # each is the first piece of its word
    config = json.loads((tmp_path / "my-ner/config.json").read_text())
    assert config["id2label"]["1"] == "B-PER"
