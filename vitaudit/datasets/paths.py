"""Path helpers shared by the loaders: listing image files, naming samples, checking many files.

A dataset can hold tens of thousands of images, so these avoid per-file system calls where a
folder listing answers the question (one ``scandir`` per folder instead of one ``stat`` per file).
"""
from __future__ import annotations

import os

from vitaudit.storage import Store, is_uri, join, parent

from .base import IMAGE_EXTENSIONS, ImageSource


def scan_images(folder: str) -> list[str]:
    """Every image file below ``folder`` (extensions in :data:`IMAGE_EXTENSIONS`, any case), as
    paths relative to it with ``/`` separators, sorted. Symlinked folders are not followed."""
    found: list[str] = []
    stack = [("", folder)]
    while stack:
        prefix, path = stack.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", entry.path))
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                    found.append(rel)
    found.sort()
    return found


class Namer:
    """``name(path)``: an absolute path as a sample name, relative to the audit file's folder
    with ``/`` separators; fast for the many files below one ``root``. Below a URI root
    (``s3://bucket/val``), a sample's path and name are both its URI."""

    def __init__(self, root: str, base_dir: str) -> None:
        self.uri = is_uri(root)
        if self.uri:
            self.root = root.rstrip("/")
            return
        self.root = os.path.normpath(os.path.abspath(root))
        self.base_dir = os.path.normpath(os.path.abspath(base_dir))
        prefix = os.path.relpath(self.root, self.base_dir).replace(os.sep, "/")
        self.prefix = "" if prefix == "." else prefix + "/"

    def below(self, rel: str) -> tuple[str, str]:
        """``(absolute path, name)`` of ``rel`` (``/``-separated, relative to ``root``)."""
        rel = rel.replace("\\", "/")
        if is_uri(rel):  # a manifest may name objects by URI
            return rel, rel
        if self.uri:
            path = self.root + "/" + rel if _plain(rel) else join(self.root, rel)
            return path, path
        if _plain(rel):  # the common case, without normpath's cost (x10,000)
            return self.root + os.sep + rel.replace("/", os.sep), self.prefix + rel
        path = os.path.normpath(os.path.join(self.root, rel))
        return path, self.name(path)

    def name(self, path: str) -> str:
        if is_uri(path):
            return path
        return os.path.relpath(path, self.base_dir).replace(os.sep, "/")


def _plain(rel: str) -> bool:
    """Whether ``rel`` is already normal: relative, no ``.``/``..``/empty parts."""
    return bool(rel) and not rel.startswith("/") and "//" not in rel and "/." not in "/" + rel \
        and not rel.endswith("/")


def source_for(path: str, store: Store) -> ImageSource | None:
    """How to fetch a sample's image: ``None`` for a local file, else its object in ``store``."""
    if not is_uri(path):
        return None
    from .fetch import Blob

    return Blob(path, store)


class FileIndex:
    """Which of many paths (local or URIs) exist as files, answered with one listing per folder."""

    def __init__(self, store: Store | None = None) -> None:
        self._listings: dict[str, frozenset[str]] = {}
        self.store = store or Store()

    def exists(self, path: str) -> bool:
        if is_uri(path):
            folder, name = parent(path), path.rstrip("/").rsplit("/", 1)[-1]
        else:
            folder, name = os.path.split(os.path.normpath(path))
        listing = self._listings.get(folder)
        if listing is None and is_uri(folder):
            try:
                listing = frozenset(r for r in self.store.find(folder) if "/" not in r)
            except FileNotFoundError:
                listing = frozenset()
            self._listings[folder] = listing
        if listing is None:
            try:
                with os.scandir(folder) as entries:
                    listing = frozenset(e.name for e in entries if e.is_file())
            except OSError:
                listing = frozenset()
            self._listings[folder] = listing
        return name in listing


def first_few(items: list[str], n: int = 3) -> str:
    """``"a, b, c and 7 more"`` for messages that name a few of many."""
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")
