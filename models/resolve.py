"""Turn a model name or path into a local folder in the HF layout.

Order: (1) an existing local directory; (2) the HF cache ($HF_HUB_CACHE, else $HF_HOME/hub,
else ~/.cache/huggingface/hub) in its models--{org}--{name}/snapshots/{rev}/ layout; (3) our cache
(core.paths.cache_dir()/models/{org}--{name}); (4) a download from
{$HF_ENDPOINT or https://huggingface.co}/{repo}/resolve/main/{file} into our cache.
Old short names are aliases: xlm-roberta-base is FacebookAI/xlm-roberta-base.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from core.paths import cache_dir
from data.download import DownloadError, download, remote_info

ALIASES = {"xlm-roberta-base": "FacebookAI/xlm-roberta-base", "xlm-roberta-large": "FacebookAI/xlm-roberta-large"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("sentencepiece.bpe.model", "tokenizer.json")


def repo_id(name: str) -> str:
    return ALIASES.get(name, name)


def hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "huggingface") / "hub"


def is_complete(folder: Path, need_weights: bool = True) -> bool:
    return ((folder / "config.json").is_file()
            and (not need_weights or any((folder / f).is_file() for f in WEIGHT_FILES))
            and any((folder / f).is_file() for f in TOKENIZER_FILES))


def find_in_hf_cache(repo: str, need_weights: bool = True) -> Path | None:
    """The snapshot refs/main points to, else any complete snapshot."""
    root = hf_hub_cache() / ("models--" + repo.replace("/", "--"))
    snapshots = root / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = root / "refs" / "main"
    revision = ref.read_text().strip() if ref.is_file() else ""
    # a commit hash names one folder; anything else (empty, '..', a path) is not followed
    one_folder = revision not in ("", ".", "..") and "/" not in revision and "\\" not in revision
    candidates = [snapshots / revision] if one_folder else []
    candidates += sorted(p for p in snapshots.iterdir() if p.is_dir())
    return next((c for c in candidates if is_complete(c, need_weights)), None)


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def download_model(repo: str, dest: Path, need_weights: bool = True) -> Path:
    """config.json, the first weight file that exists remotely, and the tokenizer files.

    Each file's size and (for LFS files) sha256 come from the Hub's HEAD answer and are checked.
    """
    base = f"{endpoint()}/{repo}/resolve/main"
    download(f"{base}/config.json", dest / "config.json")
    groups = ([WEIGHT_FILES] if need_weights else []) + [TOKENIZER_FILES]
    for group in groups:
        found = False
        for name in group:
            if (dest / name).is_file():
                found = True
                continue
            info = remote_info(f"{base}/{name}")
            if info.exists:
                download(f"{base}/{name}", dest / name, info.size, info.sha256, remote=info)
                found = True
                if group is WEIGHT_FILES:
                    break
        if not found:
            raise DownloadError(f"{base}: none of {group} exists")
    return dest


def resolve_model_dir(name_or_path: str | Path, need_weights: bool = True) -> Path:
    """A local folder holding config.json, weights (if needed) and a tokenizer file."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no config.json (expected the HF layout: config.json, "
                                    f"{' or '.join(WEIGHT_FILES)}, {' and/or '.join(TOKENIZER_FILES)})")
        return path
    repo = repo_id(str(name_or_path))
    hit = find_in_hf_cache(repo, need_weights)
    if hit is not None:
        return hit
    ours = cache_dir() / "models" / repo.replace("/", "--")
    if is_complete(ours, need_weights):
        return ours
    try:
        return download_model(repo, ours, need_weights)
    except DownloadError as e:
        raise FileNotFoundError(
            f"cannot find or download {name_or_path!r} ({e}).\n"
            f"Put config.json, {' or '.join(WEIGHT_FILES)} and {' and/or '.join(TOKENIZER_FILES)} either\n"
            f"  - in a folder and pass its path, or\n"
            f"  - in {ours}/, or\n"
            f"  - in the HF cache: {hf_hub_cache()}/models--{repo.replace('/', '--')}/snapshots/<rev>/\n"
            f"or set HF_ENDPOINT to a reachable mirror.") from None


def read_config_dict(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))
