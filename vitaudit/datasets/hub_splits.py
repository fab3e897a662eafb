"""Which files of a Hugging Face hub dataset repository hold one split of one config.

The rules are the ones the ``datasets`` library and the hub apply (``datasets.data_files``;
https://huggingface.co/docs/hub/datasets-file-names-and-splits), over the repository's list of
files, so choosing a split downloads nothing but that split:

- the README's YAML ``configs:`` (``config_name``, ``data_files`` as a pattern, a list, or
  ``{split, path}`` entries; ``data_dir``; ``default: true``) when it has them;
- else one config, ``default``, whose splits are named by the files: ``data/{split}-00000-of-00001.parquet``
  (what ``push_to_hub`` writes), or a ``train``/``validation``/``test`` keyword (``val``, ``dev``,
  ``eval``...) in a folder or file name, or else every file is ``train``;
- on the revision ``refs/convert/parquet`` (the hub's own Parquet copy of every dataset), files
  are ``{config}/{split}/0000.parquet``.

Pure functions over names: :mod:`.hfhub` fetches.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .base import DatasetError
from .paths import first_few

CONVERTED = "refs/convert/parquet"
SPLIT_KEYWORDS = {"train": ("train", "training"), "validation": ("validation", "valid", "dev", "val"),
                  "test": ("test", "testing", "eval", "evaluation")}
_SHARDED = re.compile(r"^data/(?P<split>[^/]+?)-\d{5}-of-\d{5}[^/]*\.[^/]+$")
_CONVERTED_FLAT = re.compile(r"^(?:.*?-)?(?P<split>[^-/]+?)(?:-\d{5}-of-\d{5})?\.parquet$")  # older copies
_IGNORED = ("README.md", "config.json", "dataset_info.json", "dataset_infos.json", "dataset_dict.json")


def _keyword(kw: str, whole_tail: bool) -> re.Pattern:
    sep = r"[-._ 0-9]"
    return re.compile(rf"^(?:.*{sep})?{re.escape(kw)}(?:{sep}.*)?$" if whole_tail else
                      rf"^(?:.*{sep})?{re.escape(kw)}{sep}.*$")


_IN_DIR = {s: [_keyword(k, True) for k in kws] for s, kws in SPLIT_KEYWORDS.items()}
_IN_NAME = {s: [_keyword(k, False) for k in kws] for s, kws in SPLIT_KEYWORDS.items()}


@dataclass(frozen=True)
class Layout:
    """A repository's configs, each mapping its splits to their files (repo-relative, sorted);
    ``default`` is the config used when the audit file names none (``None``: it must name one)."""

    configs: dict[str, dict[str, list[str]]]
    default: str | None
    from_readme: bool = False


def is_data_file(path: str) -> bool:
    """Whether a repository file can hold rows (not hidden, not the card or a metadata file)."""
    parts = path.split("/")
    return not any(p.startswith((".", "__")) for p in parts) and parts[-1] not in _IGNORED


def default_splits(files: list[str]) -> dict[str, list[str]]:
    """Splits from file names alone, as ``datasets`` finds them when no ``configs:`` says."""
    sharded: dict[str, list[str]] = {}
    for f in files:
        m = _SHARDED.match(f)
        if m:
            sharded.setdefault(m["split"], []).append(f)
    if sharded:
        return _sorted(sharded)
    for rules, part in ((_IN_DIR, lambda f: f.split("/")[:-1]), (_IN_NAME, lambda f: f.split("/")[-1:])):
        found = {s: [f for f in files if any(r.match(p) for r in rs for p in part(f))] for s, rs in rules.items()}
        found = {s: fs for s, fs in found.items() if fs}
        if found:
            return _sorted(found)
    return {"train": sorted(files)} if files else {}


def _sorted(splits: dict[str, list[str]]) -> dict[str, list[str]]:
    order = list(SPLIT_KEYWORDS)
    names = sorted(splits, key=lambda s: (order.index(s) if s in order else len(order), s))
    return {s: sorted(splits[s]) for s in names}


def readme_configs(readme: str | None) -> list[dict] | None:
    """The ``configs:`` list of a dataset card's YAML header, or ``None`` when it has none."""
    if not readme or not readme.startswith("---"):
        return None
    import yaml

    head = readme[3:].split("\n---", 1)[0]
    try:
        meta = yaml.safe_load(head)
    except yaml.YAMLError as exc:
        raise DatasetError(f"the dataset card's YAML header does not parse: {exc}", "hf") from None
    configs = meta.get("configs") if isinstance(meta, dict) else None
    return [c for c in configs if isinstance(c, dict)] if isinstance(configs, list) else None


def _matching(patterns: object, files: list[str]) -> list[str]:
    from fsspec.utils import glob_translate

    pats = [patterns] if isinstance(patterns, str) else [p for p in patterns or [] if isinstance(p, str)]
    regexes = [re.compile(glob_translate(p.lstrip("/"))) for p in pats]
    return sorted(f for f in files if any(r.fullmatch(f) for r in regexes))


def _config_splits(config: dict, files: list[str]) -> dict[str, list[str]]:
    data_files = config.get("data_files")
    if data_files is None:
        below = str(config.get("data_dir") or "").strip("/")
        return default_splits([f for f in files if not below or f.startswith(below + "/")])
    if isinstance(data_files, dict):
        data_files = [{"split": k, "path": v} for k, v in data_files.items()]
    if isinstance(data_files, str) or (isinstance(data_files, list) and all(isinstance(d, str) for d in data_files)):
        return {"train": _matching(data_files, files)}
    splits: dict[str, list[str]] = {}
    for entry in data_files if isinstance(data_files, list) else []:
        if isinstance(entry, dict) and "split" in entry:
            splits[str(entry["split"])] = _matching(entry.get("path"), files)
    return splits


def layout(files: list[str], readme: str | None, revision: str) -> Layout:
    """The configs and splits of a repository that holds ``files`` (with the card ``readme``)."""
    data = [f for f in files if is_data_file(f)]
    if revision == CONVERTED:
        configs: dict[str, dict[str, list[str]]] = {}
        for f in data:
            parts = f.split("/")
            if len(parts) < 2 or not f.endswith(".parquet"):
                continue
            m = _CONVERTED_FLAT.match(parts[-1])
            split = parts[1] if len(parts) > 2 else (m["split"] if m else "train")
            configs.setdefault(parts[0], {}).setdefault(split, []).append(f)
        configs = {c: _sorted(s) for c, s in sorted(configs.items())}
        return Layout(configs, "default" if "default" in configs else next(iter(configs)) if len(configs) == 1
                      else None)
    declared = readme_configs(readme)
    if declared:
        configs = {str(c.get("config_name", "default")): _config_splits(c, data) for c in declared}
        flagged = [str(c.get("config_name", "default")) for c in declared if c.get("default")]
        default = flagged[0] if flagged else ("default" if "default" in configs else
                                              next(iter(configs)) if len(configs) == 1 else None)
        return Layout(configs, default, from_readme=True)
    return Layout({"default": default_splits([f for f in data if f.endswith(".parquet")])}, "default")


def choose(found: Layout, repo: str, config: str | None, split: str | None) -> tuple[str, str, list[str]]:
    """``(config, split, files)`` the audit file asks for; :class:`DatasetError` (field ``config``,
    ``split`` or ``hf``) naming the configs or splits there are when it asks for none or a missing one."""
    names = list(found.configs)
    if not names:
        raise DatasetError(f"{repo} holds no Parquet data file at this revision", "hf")
    if config is None:
        if found.default is None or found.default not in found.configs:
            raise DatasetError(f"{repo} has configs {first_few(names, 8)}; say which with config:", "hf")
        config = found.default
    elif config not in found.configs:
        why = "" if found.from_readme or len(names) > 1 else " (its card declares no configs:)"
        raise DatasetError(f"{repo} has no config '{config}'{why}; its configs: {', '.join(names) or 'none'}", "config")
    splits = found.configs[config]
    there = ", ".join(splits) or "none"
    if not splits:
        raise DatasetError(f"{repo} (config {config}) holds no Parquet data file; the hub keeps a Parquet copy of "
                           f"most datasets on the revision {CONVERTED}: add revision: {CONVERTED}", "hf")
    if split is None:
        if len(splits) > 1:
            raise DatasetError(f"{repo} has splits {there}; say which with split: (e.g. split: "
                               f"{'validation' if 'validation' in splits else next(iter(splits))})", "hf")
        split = next(iter(splits))
    elif split not in splits:
        raise DatasetError(f"{repo} has no split '{split}'"
                           f"{'' if config == 'default' else f' in config {config}'}; its splits: {there}", "split")
    files = splits[split]
    if not files:
        raise DatasetError(f"split '{split}' of {repo} names no file that exists", "split")
    other = [f for f in files if not f.endswith(".parquet")]
    if other:
        raise DatasetError(f"split '{split}' of {repo} is stored as {first_few(other)}, not Parquet; the hub keeps "
                           f"a Parquet copy on the revision {CONVERTED}: add revision: {CONVERTED}", "split")
    return config, split, files
