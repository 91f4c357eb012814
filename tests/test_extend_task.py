"""tasks/extend.py end to end at tiny size (train.py main), its bad inputs, and its configs."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import transformers

import train
from core.config import load_config
from data.conll import Sentence
from data.sources import load_split
from data.tokenizer import XLMRTokenizer
from models import load_pretrained
from tasks.ner import write_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import require_data
    from core.paths import data_root
    require_data(data_root())  # skip, or fail in CI
    data = load_config().data
    german = load_split(data, "de", "train")[:400]
    russian = [" ".join(s.words) for s in load_split(data, "ru", "train")[:600]]
    root = tmp_path_factory.mktemp("data")
    (root / "ru.txt").write_text("\n".join(russian) + "\n", encoding="utf-8")
    (root / "de.txt").write_text("\n".join(" ".join(s.words) for s in german) + "\n", encoding="utf-8")
    (root / "empty.txt").write_text("\n\n", encoding="utf-8")
    base = write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", german, vocab_size=300, seed=0)
    return root, base, tmp_path_factory.mktemp("runs")


def args(setup, name, *extra):
    root, base, runs = setup
    return [str(ROOT / "configs" / "mini_extend_ru.yaml"), f"data.root={root}", f"model.name_or_path={base}",
            "extend.ner_splits={}", "extend.text_files=[ru.txt]", "extend.base_ner_splits={}",
            "extend.base_text_files=[de.txt]", "extend.exclude_files=[]", "extend.spm_vocab_size=400", "extend.new_pieces=150",
            "mlm.seq_length=32", "mlm.heldout_every=10", "mlm.eval_sequences=8", "mlm.pieces_budget=1024",
            "train.batch_size=8", "train.eval_every=2", "train.precision=fp32", f"train.out_dir={runs}/{{name}}",
            f"train.name={name}", *extra]


def test_extend_run_end_to_end(setup):
    root, base, runs = setup
    assert train.main(args(setup, "grow", "extend.new_rows_steps=0.5", "extend.base_text_share=0.2")) == 0
    out = runs / "grow" / "model"
    summary = json.loads((runs / "grow" / "extend_summary.json").read_text())
    assert summary["steps"] == 4 and summary["new_rows_steps"] == 2  # 1024 pieces / (8 x 32) = 4 steps
    assert summary["vocab_size"] == 300 + 150 and summary["base_text_check"]["changed"] == 0
    assert summary["heldout_after"]["unk_word_rate"] < summary["heldout_before"]["unk_word_rate"]
    assert not (runs / "grow" / "model.tmp").exists()
    model, tok = load_pretrained(out, task="masked-lm")
    base_model, base_tok = load_pretrained(base, task="masked-lm")
    assert tok.vocab_size == 450 and tok.mask_id == base_tok.mask_id
    assert model.config.vocab_size == 450 and json.loads((out / "config.json").read_text())["vocab_size"] == 450
    german = (root / "de.txt").read_text(encoding="utf-8").splitlines()[:50]
    assert [tok.encode(s) for s in german] == [base_tok.encode(s) for s in german]
    hf = transformers.XLMRobertaForMaskedLM.from_pretrained(out).eval()
    ids = torch.tensor([tok.encode("Москва и Берлин")])
    with torch.no_grad():
        assert torch.allclose(model(ids), hf(input_ids=ids).logits, atol=1e-5)


def test_new_rows_phase_keeps_old_rows(setup):
    root, base, runs = setup
    cfg = load_config(args(setup, "phase")[0], args(setup, "phase", "extend.new_rows_steps=0.5")[1:])
    from tasks.extend import build_task
    task = build_task(cfg)
    before = task.grown.encoder.embeddings.word_embeddings.weight.detach().clone()
    other = {n: p.detach().clone() for n, p in task.grown.named_parameters() if "word_embeddings" not in n and "lm_head.bias" not in n}
    handles = task.new_rows_only(True)
    from core.loop import fit
    sub = load_config(args(setup, "phase")[0], args(setup, "phase", "train.max_steps=2", "mlm.pieces_budget=0",
                                                   "train.weight_decay=0")[1:])
    fit(sub, task, runs / "phase_only")
    after = task.grown.encoder.embeddings.word_embeddings.weight
    assert torch.equal(after[:300], before[:300]) and not torch.equal(after[300:], before[300:])
    assert all(torch.equal(p, other[n]) for n, p in task.grown.named_parameters() if n in other)
    for h in handles:
        h.remove()


@pytest.mark.parametrize("extra, message", [
    (["extend.text_files=[missing.txt]"], r"extend.text_files\[0\]: no file"),
    (["extend.text_files=[empty.txt]"], r"extend.text_files\[0\]: .*holds no text lines"),
    (["extend.new_pieces=5000"], "extend.new_pieces=5000, but the target text gives only"),
    (["extend.init=zeros"], "extend.init must be one of"),
    (["extend.ner_splits={ru: test}"], "only training text"),
])
def test_bad_inputs_stop_before_any_work(setup, capsys, extra, message):
    _, _, runs = setup
    name = f"bad{abs(hash(message)) % 10000}"
    assert train.main(args(setup, name, *extra)) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (runs / name).exists()


def test_base_without_tokenizer_and_already_extended(setup, tmp_path, capsys):
    _, base, runs = setup
    bare = tmp_path / "bare"
    shutil.copytree(base, bare)
    (bare / "sentencepiece.bpe.model").unlink()
    assert train.main(args(setup, "bare") + [f"model.name_or_path={bare}"]) == 2
    assert "has no sentencepiece.bpe.model" in capsys.readouterr().err
    assert train.main(args(setup, "again") + [f"model.name_or_path={runs}/grow/model"]) == 2
    assert "already extended with 150 pieces" in capsys.readouterr().err
    assert not (runs / "bare").exists() and not (runs / "again").exists()


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*extend*.yaml")))
def test_extend_configs_build_at_tiny_size(setup, config):
    """Every extend config (mini ru/ko, xlm-roberta-base) builds its task when pointed at a tiny checkpoint
    and tiny text: the keys exist and the pipeline up to training runs."""
    root, base, runs = setup
    cfg = load_config(ROOT / "configs" / config)
    assert cfg.task == "extend" and cfg.extend.new_pieces > 0
    overrides = args(setup, f"cfg_{Path(config).stem}")[1:]
    cfg = load_config(ROOT / "configs" / config, overrides)
    from tasks.extend import build_task
    task = build_task(cfg)
    assert task.tokenizer.vocab_size == 450 and cfg.train.max_steps == 4


def test_text_sources_formats_and_overlap_filter(tmp_path):
    import gzip

    from data.text_sources import TextSourceError, drop_overlaps, read_source
    (tmp_path / "wiki").mkdir()
    (tmp_path / "wiki" / "wiki_01").write_text('<doc id="1" title="x">\n제목\n\n본문 &amp; 내용.\n</doc>\n', encoding="utf-8")
    (tmp_path / "wiki" / "wiki_00").write_text("### novel.xml\nПервая  строка\n", encoding="utf-8")
    (tmp_path / "a.csv").write_text('\ufeffguid,sentence\n1,"첫 문장, 쉼표"\n2,둘째\n', encoding="utf-8")
    with gzip.open(tmp_path / "r.tsv.gz", "wt", encoding="utf-8") as f:
        f.write('id\treview\n1\t"따옴표" 리뷰\n2\t\n')
    assert read_source(tmp_path, "wiki/wiki_*") == ["Первая строка", "제목", "본문 & 내용."]
    assert read_source(tmp_path, "a.csv#sentence") == ["첫 문장, 쉼표", "둘째"]
    assert read_source(tmp_path, "r.tsv.gz#review") == ['"따옴표" 리뷰']
    assert read_source(tmp_path, "wiki/wiki_*", max_lines=2) == ["Первая строка", "제목"]
    with pytest.raises(TextSourceError, match=r"key\.x: .*has no column 'text'"):
        read_source(tmp_path, "a.csv#text", key="key.x")
    lines = ["그는 1990년에 서울에서 태어났다. 그 뒤 부산으로 가서 오래 살았다고 전한다.", "전혀 다른 문장이 여기 있다고 한다.",
             "짧은 줄"]
    kept, dropped = drop_overlaps(lines, ["그 뒤 부산으로 가서 오래 살았다고 전한다.", "짧은 줄"])
    assert kept == ["전혀 다른 문장이 여기 있다고 한다."] and dropped == 2
