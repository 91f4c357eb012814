"""XLM-R tokenizer: sentencepiece model with the fairseq id offset, or tokenizer.json.

    tok = XLMRTokenizer.from_pretrained("path/to/model")  # sentencepiece.bpe.model or tokenizer.json
    tok.encode("Hallo Welt")                 # [0, ..., 2], same ids as HF XLMRobertaTokenizer
    ids, word_index = tok.encode_words(["Hallo", "Welt"])  # no specials, never truncated
    tok = tok.add_pieces([("▁Москва", -9.1)])          # a grown copy: new ids after every old one
    tok, ids = tok.add_special_tokens(["<e1>", "</e1>"])  # whole strings matched in raw text

Fairseq ids: <s>=0, <pad>=1, </s>=2, <unk>=3, then every sentencepiece id + 1 (spm's own
<unk>=0, <s>=1, </s>=2 are control pieces; spm's unk maps to 3). In a model as trained, <mask>
is not in the sentencepiece model and gets the last id, N + 1 for N spm pieces.

Grown vocabularies keep every id and append. The first growth writes <mask> into the model
proto itself, as a CONTROL piece at spm id N (so its fairseq id stays N + 1), and the new pieces
follow it: from then on every id, <mask> included, is spm id + 1, and the proto alone says where
<mask> is -- any folder with the merged ``sentencepiece.bpe.model`` loads with no extra
argument. CONTROL pieces after the first three (<mask>, added special tokens) are never produced
by segmentation; like HF's added tokens they are cut out of raw text as whole strings first.
Both back ends give identical ids (tests/test_tokenizer.py, tests/test_extend_tokenizer.py);
tokenizer.json is built from the spm model the way HF's XLMRobertaConverter does.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Iterable

import sentencepiece as spm

from data.spm_proto import CONTROL, NORMAL, Piece, precompiled_charsmap, read_model, write_model

SPM_FILE, JSON_FILE, CONFIG_FILE = "sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json"
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MASK = "<mask>"
OFFSET = 1  # fairseq id = spm id + 1


class XLMRTokenizer:
    bos_id, pad_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, sp: spm.SentencePieceProcessor | None = None, fast=None):
        if sp is None and fast is None:
            raise ValueError("need a sentencepiece model or a tokenizers.Tokenizer")
        self.sp, self.fast = sp, fast
        if sp is not None:
            n = sp.get_piece_size()
            controls = [i for i in range(3, n) if sp.is_control(i)]  # <mask> and added specials, if grown
            self.mask_in_proto = any(sp.id_to_piece(i) == MASK for i in controls)
            self.vocab_size = n + OFFSET if self.mask_in_proto else n + OFFSET + 1
            self.mask_id = sp.piece_to_id(MASK) + OFFSET if self.mask_in_proto else n + OFFSET
            self.special_ids = {sp.id_to_piece(i): i + OFFSET for i in controls}
        else:
            self.mask_in_proto = False
            self.vocab_size = fast.get_vocab_size()
            self.mask_id = fast.token_to_id(MASK)
            self.special_ids = {t.content: i for i, t in fast.get_added_tokens_decoder().items()
                                if t.content not in SPECIALS}
        self.special_ids |= {MASK: self.mask_id} | {s: i for i, s in enumerate(SPECIALS)}
        longest_first = sorted(self.special_ids, key=len, reverse=True)  # HF matches these inside raw text too
        self._special_re = re.compile("(" + "|".join(map(re.escape, longest_first)) + ")")

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
    def train(cls, sentences: Iterable[str], vocab_size: int, out_dir: str | Path | None, model_type: str = "unigram",
              input_sentence_size: int = 0, character_coverage: float = 0.9995, num_threads: int = 2,
              seed_sentencepiece_size: int = 1_000_000) -> "XLMRTokenizer":
        """Train a sentencepiece model with XLM-R's conventions and save it to out_dir (None: keep
        it in memory).

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
        if out_dir is not None:
            tok.save(out_dir)
        return tok

    def save(self, folder: str | Path) -> None:
        """Write sentencepiece.bpe.model (when we have one), tokenizer.json and tokenizer_config.json
        (whose added_tokens_decoder tells transformers the id of <mask> and of added specials)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.sp is not None:
            (folder / SPM_FILE).write_bytes(self.sp.serialized_model_proto())
            fast = build_fast_tokenizer(self.sp)
        else:
            fast = self.fast
        fast.save(str(folder / JSON_FILE))
        added = {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                          "single_word": False, "special": True}
                 for s, i in sorted(self.special_ids.items(), key=lambda kv: kv[1])}
        (folder / CONFIG_FILE).write_text(json.dumps(
            {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512, "bos_token": "<s>",
             "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": MASK,
             "sep_token": "</s>", "cls_token": "<s>", "added_tokens_decoder": added,
             # ours, for readers of the folder (the proto alone is enough to load it)
             "xlt_vocab": {"vocab_size": self.vocab_size, "mask_id": self.mask_id,
                           "base_vocab_size": self.mask_id + 1,
                           "id_rule": "fairseq id = spm id + 1 (spm <unk> -> 3); "
                                      + ("<mask> is a CONTROL piece of the proto, ids after it are grown pieces"
                                         if self.mask_in_proto else "<mask> = last id")}},
            indent=2) + "\n", encoding="utf-8")

    # ---- growing the vocabulary -----------------------------------------------------------------
    def _grown(self, new: list[Piece]) -> "XLMRTokenizer":
        if self.sp is None:
            raise ValueError(f"growing the vocabulary needs {SPM_FILE} (this tokenizer has only {JSON_FILE})")
        pieces, rest = read_model(self.sp.serialized_model_proto())
        have = {p.piece for p in pieces} | set(SPECIALS)
        clash = [p.piece for p in new if p.piece in have]
        if clash:
            raise ValueError(f"{len(clash)} piece(s) already in the vocabulary, e.g. {clash[:5]}")
        if len({p.piece for p in new}) != len(new):
            raise ValueError("the new pieces repeat a string")
        if not self.mask_in_proto:  # <mask> keeps its id N + 1 as a CONTROL piece at spm id N
            pieces.append(Piece(MASK, 0.0, CONTROL))
        return XLMRTokenizer(sp=spm.SentencePieceProcessor(model_proto=write_model(pieces + new, rest)))

    def add_pieces(self, pieces: list[tuple[str, float]]) -> "XLMRTokenizer":
        """A copy with ordinary (NORMAL) pieces appended, each with its unigram score; their ids
        follow every existing id, in order. Existing ids and segmentations of text the new pieces
        cannot match are unchanged (data/extend_vocab.py also checks real text)."""
        return self._grown([Piece(text, float(score), NORMAL) for text, score in pieces])

    def add_special_tokens(self, tokens: list[str]) -> tuple["XLMRTokenizer", list[int]]:
        """(a copy with ``tokens`` as special tokens, their ids): each is cut out of raw text as a
        whole string (like <mask>) and never produced by segmentation."""
        grown = self._grown([Piece(t, 0.0, CONTROL) for t in tokens])
        return grown, [grown.special_ids[t] for t in tokens]

    def new_ids(self) -> list[int]:
        """Ids grown after the base vocabulary (everything after <mask>)."""
        return list(range(self.mask_id + 1, self.vocab_size))

    # ---- encoding -----------------------------------------------------------------------------
    def _spm_to_ids(self, spm_ids: list[int]) -> list[int]:
        return [i + OFFSET if i != 0 else self.unk_id for i in spm_ids]  # spm <unk> is id 0

    def _spm_encode(self, texts: list[str]) -> list[list[int]]:
        """Fairseq ids per text; special-token strings inside a text become their ids (as in HF)."""
        if not any(self._special_re.search(t) for t in texts):
            return [self._spm_to_ids(ids) for ids in self.sp.encode(texts)]  # one batched call
        out = []
        for text in texts:
            ids = []
            for k, part in enumerate(self._special_re.split(text)):
                if k % 2:  # odd parts are the matched special strings
                    ids.append(self.special_ids[part])
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

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of many texts without special tokens (one batched call where possible)."""
        if self.sp is not None:
            return self._spm_encode(list(texts))
        return [e.ids for e in self.fast.encode_batch(list(texts), add_special_tokens=False)]

    def encode_words(self, words: list[str]) -> tuple[list[int], list[int]]:
        """Pieces of pre-split words (each word as if preceded by a space) and, per piece, the
        index of its word. A word may give no piece at all (e.g. empty or zero-width only)."""
        return self.encode_words_batch([words])[0]

    def encode_words_batch(self, sentences: list[list[str]]) -> list[tuple[list[int], list[int]]]:
        """``encode_words`` of many sentences in one tokenizer call (sentencepiece: one call over
        all their words, ~3x faster than a call per sentence on 20k PAN-X sentences)."""
        if self.sp is not None:
            flat = self._spm_encode([w for words in sentences for w in words])
            out, at = [], 0
            for words in sentences:
                per_word, at = flat[at:at + len(words)], at + len(words)
                out.append(([i for ids in per_word for i in ids],
                            [w for w, ids in enumerate(per_word) for _ in ids]))
            return out
        return fast_encode_words_batch(self.fast, sentences)

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.id_to_token(i) for i in ids]

    def id_to_token(self, i: int) -> str:
        if i < len(SPECIALS):
            return SPECIALS[i]
        if i == self.mask_id:
            return MASK
        return self.sp.id_to_piece(i - OFFSET) if self.sp is not None else self.fast.id_to_token(i)

    def decode(self, ids: Iterable[int]) -> str:
        special = set(self.special_ids.values())
        pieces = [self.id_to_token(i) for i in ids if i not in special]
        return "".join(pieces).replace("\u2581", " ").strip()

    def __len__(self) -> int:
        return self.vocab_size


def fast_encode_words_batch(fast, sentences: list[list[str]]) -> list[tuple[list[int], list[int]]]:
    """(piece ids, word index per piece) of pre-split sentences in one tokenizers ``encode_batch`` call."""
    encs = fast.encode_batch([list(words) for words in sentences], is_pretokenized=True, add_special_tokens=False)
    return [(list(e.ids), list(e.word_ids)) for e in encs]


# ---- tokenizer.json from a sentencepiece model (as HF's XLMRobertaConverter) ------------------
def build_fast_tokenizer(sp: spm.SentencePieceProcessor):
    """A tokenizers.Tokenizer giving the same ids as the spm model with the fairseq offset."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors, decoders
    from tokenizers.models import Unigram

    vocab = [(s, 0.0) for s in SPECIALS]
    vocab += [(sp.id_to_piece(i), sp.get_score(i)) for i in range(3, sp.get_piece_size())]
    controls = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size()) if sp.is_control(i)]
    if MASK not in controls:  # as trained: <mask> is the last id
        vocab += [(MASK, 0.0)]
        controls.append(MASK)
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
    fast.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (*SPECIALS, *controls)])
    return fast
