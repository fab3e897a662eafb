"""One identity per expectation, the same however pytest runs it.

pytest's node ids are relative to its rootdir, which moves with the arguments (a separate
``--audit-compare ../elsewhere/audit.json`` names a path, and pytest looks for the rootdir above
it) or with ``--rootdir``; and under ``-n N --dist loadgroup`` a dataset's items carry an
``@<group>`` suffix. So ``audit.json``, JUnit's ``id`` property, summaries, ``vitaudit compare``
and failure lines use this identity instead:

    <audit file, relative to its project>::<image or dataset>::<expectation id>

The project is the nearest folder above the audit file that holds a project marker (``.git``,
``pyproject.toml``, ``setup.cfg``, ``tox.ini``, ``pytest.ini`` ...); without one, the folder pytest
was started in when the file is inside it, else pytest's rootdir. Run from the project root, it is
pytest's own node id (without the xdist suffix).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pytest

#: Files or folders that mark a project's root (pytest's ini files, packaging files, VCS folders).
MARKERS = (".git", ".hg", "pyproject.toml", "setup.cfg", "setup.py", "tox.ini", "pytest.ini", ".pytest.ini")


@lru_cache(maxsize=256)
def _marked_root(folder: Path) -> Path | None:
    for d in (folder, *folder.parents):
        if any((d / m).exists() for m in MARKERS):
            return d
    return None


def project_relative(config: pytest.Config, path: str | os.PathLike) -> str:
    """``path`` relative to its project (see the module doc), with ``/`` separators."""
    p = Path(os.path.abspath(path))
    for base in (_marked_root(p.parent), Path(config.invocation_params.dir).absolute(), config.rootpath):
        if base is not None and (base == p or base in p.parents):
            return p.relative_to(base).as_posix()
    return p.as_posix()


def strip_group_suffix(nodeid: str, item: pytest.Item) -> str:
    """``...[mean]@audit_d.yaml:scenes`` -> ``...[mean]``: the suffix ``--dist loadgroup`` adds."""
    for mark in item.iter_markers("xdist_group"):
        group = mark.args[0] if mark.args else mark.kwargs.get("name", "")
        if group and nodeid.endswith(f"@{group}"):
            return nodeid[: -len(group) - 1]
    group = getattr(item, "xdist_group", None)
    if group and nodeid.endswith(f"@{group}"):
        return nodeid[: -len(group) - 1]
    return nodeid


def expectation_id(item: pytest.Item) -> str:
    """The run-independent identity of ``item``: its file relative to the project, then its node id
    below the file, without the xdist group suffix."""
    file_node = item.getparent(pytest.File)
    nodeid = strip_group_suffix(item.nodeid, item)
    if file_node is None or not nodeid.startswith(file_node.nodeid):
        return nodeid
    return project_relative(item.config, file_node.path) + nodeid[len(file_node.nodeid):]
