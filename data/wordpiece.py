"""WordPiece tokenizer from a tokenizer.json (klue/roberta-base and -large: RoBERTa weights, BERT pieces).

    tok = WordPieceTokenizer.from_pretrained("path/to/klue-roberta-base")   # reads tokenizer.json
    tok.encode("이순신은 조선의 장군이다.")          # [CLS] .. [SEP] ids, as transformers' BertTokenizerFast
    ids, word_index = tok.encode_words(["이순신은", "장군이다."])

The same interface as data/tokenizer.py's XLMRTokenizer (bos/pad/eos/unk/mask ids, vocab_size,
encode, encode_words, decode, save), so every task takes either. The special ids are looked up by
name: klue/roberta puts [CLS]=0, [PAD]=1, [SEP]=2, [UNK]=3, [MASK]=4, the RoBERTa positions
(bos 0, pad 1, eos 2) the encoder expects. ``train`` builds a small one (tests, smoke runs).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from data.tokenizer import fast_encode_words_batch

JSON_FILE = "tokenizer.json"
SPECIALS = ("[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]")


def is_wordpiece_folder(folder: str | Path) -> bool:
    """True when folder/tokenizer.json holds a WordPiece model (and no sentencepiece model beside it)."""
    path = Path(folder) / JSON_FILE
    if not path.is_file() or (Path(folder) / "sentencepiece.bpe.model").is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("model", {}).get("type") == "WordPiece"
    except (json.JSONDecodeError, AttributeError):
        return False


class WordPieceTokenizer:
    def __init__(self, fast):
        self.fast = fast
        ids = {name: fast.token_to_id(name) for name in SPECIALS}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"WordPiece vocabulary lacks {missing}")
        self.bos_id, self.pad_id, self.eos_id = ids["[CLS]"], ids["[PAD]"], ids["[SEP]"]
        self.unk_id, self.mask_id = ids["[UNK]"], ids["[MASK]"]
        self.vocab_size = fast.get_vocab_size()

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "WordPieceTokenizer":
        from tokenizers import Tokenizer

        path = Path(folder) / JSON_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no {JSON_FILE}")
        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def train(cls, sentences: Iterable[str], vocab_size: int, out_dir: str | Path | None = None) -> "WordPieceTokenizer":
        """A BERT-style WordPiece vocabulary (cased, accents kept, as klue/roberta) on ``sentences``."""
        from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
        from tokenizers.models import WordPiece
        from tokenizers.trainers import WordPieceTrainer

        fast = Tokenizer(WordPiece(unk_token="[UNK]"))
        fast.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, clean_text=True,
                                                     handle_chinese_chars=True)
        fast.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        fast.decoder = decoders.WordPiece()
        fast.train_from_iterator(sentences, WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS)))
        fast.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", fast.token_to_id("[CLS]")), ("[SEP]", fast.token_to_id("[SEP]"))])
        tok = cls(fast)
        if out_dir is not None:
            tok.save(out_dir)
        return tok

    def add_special_tokens(self, tokens: list[str]) -> tuple["WordPieceTokenizer", list[int]]:
        """(a copy with ``tokens`` as special tokens after the vocabulary, their ids), as XLMRTokenizer."""
        from tokenizers import AddedToken, Tokenizer

        fast = Tokenizer.from_str(self.fast.to_str())
        fast.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens])
        return WordPieceTokenizer(fast), [fast.token_to_id(t) for t in tokens]

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.fast.save(str(folder / JSON_FILE))
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "BertTokenizer", "do_lower_case": False, "model_max_length": 512,
             "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
             "mask_token": "[MASK]", "bos_token": "[CLS]", "eos_token": "[SEP]"}, indent=2) + "\n", encoding="utf-8")

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = self.fast.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids, self.eos_id] if add_special_tokens else ids

    def encode_words(self, words: list[str]) -> tuple[list[int], list[int]]:
        """Pieces of pre-split words and, per piece, the index of its word (no specials, no truncation)."""
        return self.encode_words_batch([words])[0]

    def encode_words_batch(self, sentences: list[list[str]]) -> list[tuple[list[int], list[int]]]:
        """``encode_words`` of many sentences in one (parallel) tokenizers call."""
        return fast_encode_words_batch(self.fast, sentences)

    def id_to_token(self, i: int) -> str:
        return self.fast.id_to_token(i)

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.id_to_token(i) for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        specials = {self.bos_id, self.pad_id, self.eos_id, self.mask_id}
        return self.fast.decode([i for i in ids if i not in specials], skip_special_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size
