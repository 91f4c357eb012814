"""The shipped configs as train.py's command line sees them: bare names, nearest names, the list.

    resolve_config("tiny_ner")        # -> configs/tiny_ner.yaml (a path that exists is kept as given)
    for row in list_configs():         # name, header (the file's first comment line), needs
        print(row.name, row.needs, row.header)

``needs`` comes from the config's values, not from a hand-kept table: a string value that names a
path inside another config's run folder (``model.name_or_path: runs/mini_pretrain/model``) means
that config must run first, and so do the configs it needs in turn (mini_re_klue needs
mini_extend_ko, which needs mini_pretrain). They are listed in the order to run them. A checkpoint
the file names by its hub name (``model.name_or_path: xlm-roberta-base``) is listed as a download.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.config import ConfigError, load_config, load_yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def resolve_config(name: str, config_dir: Path = CONFIG_DIR) -> Path:
    """The config file ``name`` means: an existing path as given, else ``configs/<name>[.yaml]``.
    A ConfigError for a missing file names up to three nearest shipped configs."""
    given = Path(name)
    if given.is_file():
        return given
    if given.parent == Path(".") or given.parent.resolve() == config_dir:  # a bare name, with or without .yaml
        for candidate in (config_dir / given.name, config_dir / f"{given.name}.yaml"):
            if candidate.is_file():
                return candidate
    if given.is_dir():
        raise ConfigError(f"{name}: a folder, not a config file (python train.py --list shows the configs)")
    names = sorted(p.stem for p in config_dir.glob("*.yaml"))
    close = difflib.get_close_matches(given.stem, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"{name}: no such config file{hint} (python train.py --list shows all {len(names)})")


@dataclass
class ConfigRow:
    name: str
    header: str  # the first comment line of the file
    needs: list[str]  # configs to run first, in the order to run them
    problem: str = ""  # set when the config does not load
    downloads: list[str] = field(default_factory=list)  # hub checkpoints the file names (model.name_or_path)


def list_configs(config_dir: Path = CONFIG_DIR) -> list[ConfigRow]:
    """Every config in ``config_dir``, by name, with its header line and what it needs first."""
    paths = sorted(config_dir.glob("*.yaml"))
    loaded, problems = {}, {}
    for path in paths:
        try:
            loaded[path.stem] = load_config(path)
        except ConfigError as err:
            problems[path.stem] = str(err)
    producers = {}  # run folder -> the config that writes it
    for name, cfg in loaded.items():
        out_dir = cfg.train.out_dir.replace("{name}", cfg.train.name)
        producers[Path(out_dir).as_posix().rstrip("/")] = name
    direct = {name: _direct_needs(name, cfg, producers) for name, cfg in loaded.items()}
    return [ConfigRow(path.stem, _header(path), _in_run_order(path.stem, direct), problems.get(path.stem, ""),
                      _downloads(loaded.get(path.stem), path)) for path in paths]


def _downloads(cfg, path: Path) -> list[str]:
    """model.name_or_path when the file sets it to a hub name: not a run folder, not an existing folder."""
    raw = load_yaml(path.read_bytes(), str(path)) if cfg is not None else None
    model = raw.get("model") if isinstance(raw, dict) else None
    if cfg is None or cfg.model.tiny_random or not isinstance(model, dict) or "name_or_path" not in model:
        return []
    name = cfg.model.name_or_path
    local = Path(name).is_absolute() or name.startswith(("runs/", "./", "../")) or Path(name).exists()
    return [] if local else [name]


def _header(path: Path) -> str:
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def _direct_needs(name: str, cfg, producers: dict[str, str]) -> list[str]:
    found = []
    for value in _strings(asdict(cfg)):
        path = Path(value).as_posix()
        for run_dir, producer in producers.items():
            if producer != name and (path == run_dir or path.startswith(run_dir + "/")) and producer not in found:
                found.append(producer)
    return found


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _in_run_order(name: str, direct: dict[str, list[str]]) -> list[str]:
    """Everything ``name`` needs, transitively, each after what it needs itself."""
    order: list[str] = []

    def visit(node: str, trail: tuple[str, ...]) -> None:
        for need in direct.get(node, []):
            if need in trail or need in order:
                continue
            visit(need, trail + (need,))
            order.append(need)

    visit(name, (name,))
    return order
