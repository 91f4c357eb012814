"""XLM-R tokenizer: sentencepiece model with the fairseq id offset, or tokenizer.json.

    tok = XLMRTokenizer.from_pretrained("path/to/model")  # sentencepiece.bpe.model or tokenizer.json
    tok.encode("Hallo Welt")                 # [0, ..., 2], same ids as HF XLMRobertaTokenizer
    ids, word_index = tok.encode_words(["Hallo", "Welt"])  # no specials, never truncated

Fairseq ids: <s>=0, <pad>=1, </s>=2, <unk>=3, then every sentencepiece id + 1 (spm's own
<unk>=0, <s>=1, </s>=2 are control pieces; spm's unk maps to 3), and <mask> is the last id.
Both back ends give identical ids (tests/test_tokenizer.py); tokenizer.json is built from the
spm model the way HF's XLMRobertaConverter does (models are not needed here).
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Iterable

import sentencepiece as spm

SPM_FILE, JSON_FILE = "sentencepiece.bpe.model", "tokenizer.json"
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
SPECIAL_IN_TEXT = re.compile("(<s>|<pad>|</s>|<unk>|<mask>)")  # HF matches these inside raw text too
OFFSET = 1  # fairseq id = spm id + 1


class XLMRTokenizer:
    bos_id, pad_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, sp: spm.SentencePieceProcessor | None = None, fast=None):
        if sp is None and fast is None:
            raise ValueError("need a sentencepiece model or a tokenizers.Tokenizer")
        self.sp, self.fast = sp, fast
        self.vocab_size = sp.get_piece_size() + OFFSET + 1 if sp is not None else fast.get_vocab_size()
        self.mask_id = self.vocab_size - 1

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder: str | Path, backend: str = "auto") -> "XLMRTokenizer":
        """backend: auto (spm if present, else tokenizer.json) | spm | tokenizers."""
        folder = Path(folder)
        has_spm, has_json = (folder / SPM_FILE).is_file(), (folder / JSON_FILE).is_file()
        if backend in ("auto", "spm") and has_spm:
            return cls(sp=spm.SentencePieceProcessor(model_file=str(folder / SPM_FILE)))
        if backend in ("auto", "tokenizers") and has_json:
            from tokenizers import Tokenizer
            return cls(fast=Tokenizer.from_file(str(folder / JSON_FILE)))
        raise FileNotFoundError(f"{folder}: no {SPM_FILE if backend == 'spm' else JSON_FILE if backend == 'tokenizers' else SPM_FILE + ' or ' + JSON_FILE}")

    @classmethod
    def train(cls, sentences: Iterable[str], vocab_size: int, out_dir: str | Path, model_type: str = "unigram",
              input_sentence_size: int = 0, character_coverage: float = 0.9995, num_threads: int = 2,
              seed_sentencepiece_size: int = 1_000_000) -> "XLMRTokenizer":
        """Train a sentencepiece model with XLM-R's conventions and save it to out_dir.

        vocab_size counts fairseq ids (specials and <mask> included), so the spm model gets
        vocab_size - 2 pieces. Normalisation is nmt_nfkc, as in XLM-R's model.
        """
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=(s for s in sentences if s.strip()), model_writer=model,
            vocab_size=vocab_size - OFFSET - 1, model_type=model_type, normalization_rule_name="nmt_nfkc",
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=character_coverage,
            input_sentence_size=input_sentence_size, shuffle_input_sentence=True, num_threads=num_threads,
            seed_sentencepiece_size=seed_sentencepiece_size, hard_vocab_limit=False,
            minloglevel=2)
        tok = cls(sp=spm.SentencePieceProcessor(model_proto=model.getvalue()))
        tok.save(out_dir)
        return tok

    def save(self, folder: str | Path) -> None:
        """Write sentencepiece.bpe.model (when we have one) and tokenizer.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.sp is not None:
            (folder / SPM_FILE).write_bytes(self.sp.serialized_model_proto())
            fast = build_fast_tokenizer(self.sp)
        else:
            fast = self.fast
        fast.save(str(folder / JSON_FILE))
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512, "bos_token": "<s>",
             "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
             "sep_token": "</s>", "cls_token": "<s>"}, indent=2) + "\n", encoding="utf-8")

    # ---- encoding -----------------------------------------------------------------------------
    def _spm_to_ids(self, spm_ids: list[int]) -> list[int]:
        return [i + OFFSET if i != 0 else self.unk_id for i in spm_ids]  # spm <unk> is id 0

    def _spm_encode(self, texts: list[str]) -> list[list[int]]:
        """Fairseq ids per text; special-token strings inside a text become their ids (as in HF)."""
        if not any("<" in t for t in texts):
            return [self._spm_to_ids(ids) for ids in self.sp.encode(texts)]  # one batched call
        out = []
        for text in texts:
            ids = []
            for k, part in enumerate(SPECIAL_IN_TEXT.split(text)):
                if k % 2:  # odd parts are the matched special strings
                    ids.append(self.mask_id if part == "<mask>" else SPECIALS.index(part))
                elif part:
                    ids += self._spm_to_ids(self.sp.encode(part))
            out.append(ids)
        return out

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if self.sp is not None:
            ids = self._spm_encode([text])[0]
        else:
            ids = self.fast.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids, self.eos_id] if add_special_tokens else ids

    def encode_words(self, words: list[str]) -> tuple[list[int], list[int]]:
        """Pieces of pre-split words (each word as if preceded by a space) and, per piece, the
        index of its word. A word may give no piece at all (e.g. empty or zero-width only)."""
        if self.sp is not None:
            per_word = self._spm_encode(list(words))
        else:
            enc = self.fast.encode(list(words), is_pretokenized=True, add_special_tokens=False)
            per_word = [[] for _ in words]
            for i, w in zip(enc.ids, enc.word_ids):
                per_word[w].append(i)
        piece_ids = [i for ids in per_word for i in ids]
        word_index = [w for w, ids in enumerate(per_word) for _ in ids]
        return piece_ids, word_index

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.id_to_token(i) for i in ids]

    def id_to_token(self, i: int) -> str:
        if i < len(SPECIALS):
            return SPECIALS[i]
        if i == self.mask_id:
            return "<mask>"
        return self.sp.id_to_piece(i - OFFSET) if self.sp is not None else self.fast.id_to_token(i)

    def decode(self, ids: Iterable[int]) -> str:
        pieces = [self.id_to_token(i) for i in ids if i >= len(SPECIALS) and i != self.mask_id]
        return "".join(pieces).replace("\u2581", " ").strip()

    def __len__(self) -> int:
        return self.vocab_size


# ---- tokenizer.json from a sentencepiece model (as HF's XLMRobertaConverter) ------------------
def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def _proto_fields(buf: bytes):
    """(field number, wire type, value) of a serialized protobuf message; bytes for wire type 2."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def precompiled_charsmap(model_proto: bytes) -> bytes:
    """ModelProto.normalizer_spec (field 3) . precompiled_charsmap (field 2); no protobuf needed."""
    for field, wire, value in _proto_fields(model_proto):
        if field == 3 and wire == 2:
            for f2, w2, v2 in _proto_fields(value):
                if f2 == 2 and w2 == 2:
                    return bytes(v2)
    return b""


def build_fast_tokenizer(sp: spm.SentencePieceProcessor):
    """A tokenizers.Tokenizer giving the same ids as the spm model with the fairseq offset."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors, decoders
    from tokenizers.models import Unigram

    vocab = [(s, 0.0) for s in SPECIALS]
    vocab += [(sp.id_to_piece(i), sp.get_score(i)) for i in range(3, sp.get_piece_size())]
    vocab += [("<mask>", 0.0)]
    fast = Tokenizer(Unigram(vocab, unk_id=3, byte_fallback=False))
    steps = [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), "\u2581")]
    charsmap = precompiled_charsmap(sp.serialized_model_proto())
    if charsmap:
        steps.insert(0, normalizers.Precompiled(charsmap))
    fast.normalizer = normalizers.Sequence(steps)
    fast.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    fast.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    fast.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    from tokenizers import AddedToken
    fast.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (*SPECIALS, "<mask>")])
    return fast
