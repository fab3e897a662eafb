"""``hf: owner/name``: a dataset on the Hugging Face hub, or in its local cache.

``huggingface_hub.snapshot_download`` does the fetching and the cache: online it lists the
repository once (and keeps that listing in the cache), fetches the dataset card, then only the
Parquet files of the chosen split (:mod:`.hub_splits` says which); offline (``HF_HUB_OFFLINE=1``)
or with the hub unreachable it answers from the hub cache (``HF_HUB_CACHE``,
``~/.cache/huggingface/hub`` by default) without a request. The files are then read by the
``parquet:`` loader, so column mapping, ``ClassLabel`` names from the tables' ``huggingface``
metadata, streaming by row group and the distributed pass are the same.
"""
from __future__ import annotations

import glob as globlib
import os
import re
from dataclasses import dataclass

from vitaudit.storage import Store, is_uri

from .base import DatasetError, Sample
from .hub_splits import CONVERTED, choose, layout
from .parquet import parquet_samples
from .tables import Columns

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
EXTRA = "pip install 'vitaudit[hf-datasets]'"


def looks_like_repo_id(text: str) -> bool:
    """Whether ``text`` can name a hub repository (``owner/name``, or a legacy ``name``)."""
    return not is_uri(text) and bool(_REPO_ID.match(text)) and ".." not in text \
        and not text.endswith((".parquet", ".arrow", ".json"))


@dataclass(frozen=True)
class HubDataset:
    """What an audit file asks of the hub: a dataset repository, and which of its data."""

    repo_id: str
    split: str | None = None
    config: str | None = None
    revision: str | None = None

    @property
    def shown(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class HubSplit:
    """The local copies of one split's Parquet files, in order, and where they came from."""

    files: tuple[str, ...]  # paths in the hub cache's snapshot folder
    names: tuple[str, ...]  # the same files, repo-relative
    config: str
    split: str
    folder: str  # the snapshot folder (its name is the commit)


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise DatasetError(f"hf: a hub dataset id needs huggingface_hub; {EXTRA}", "hf") from None
    return huggingface_hub


def _listing(hub, ref: HubDataset, folder: str) -> tuple[list[str], bool]:
    """Every file of the repository at the snapshot's commit (the listing ``snapshot_download``
    cached), or, when no listing is cached, the files in the snapshot folder; ``True`` when complete."""
    try:
        tree = hub.get_cached_repo_tree(ref.repo_id, repo_type="dataset", revision=os.path.basename(folder))
        return [f.path for f in tree], True
    except (AttributeError, hub.errors.CachedRepoTreeNotFoundError):
        found = globlib.glob("**", root_dir=folder, recursive=True)
        return [f.replace(os.sep, "/") for f in found if os.path.isfile(os.path.join(folder, f))], False


def _failure(hub, ref: HubDataset, exc: Exception, missing_hint: str, split: str | None = None) -> DatasetError:
    """The one-line cause of a failed ``snapshot_download`` (of the card, or of ``split``'s files)."""
    errors = hub.errors
    if isinstance(exc, errors.RevisionNotFoundError):
        return DatasetError(f"hub dataset {ref.repo_id} has no revision '{ref.revision}'", "revision")
    if isinstance(exc, errors.GatedRepoError):
        return DatasetError(f"hub dataset {ref.repo_id} is gated: accept its terms on the hub and log in "
                            "(HF_TOKEN, or hf auth login)", "hf")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return DatasetError(f"no dataset {ref.repo_id} on the hub (a private one needs a token: HF_TOKEN, or hf "
                            f"auth login){missing_hint}", "hf")
    if isinstance(exc, errors.LocalEntryNotFoundError):
        cache = hub.constants.HF_HUB_CACHE
        if hub.constants.HF_HUB_OFFLINE:
            why, fix = "HF_HUB_OFFLINE is set", "run once with the hub reachable and HF_HUB_OFFLINE unset"
        else:
            cause = exc.__cause__ or exc
            why, fix = f"the hub is not reachable ({type(cause).__name__})", "run once with the hub reachable"
        if split is not None:
            return DatasetError(f"hub dataset {ref.shown}: split '{split}' is not in the hub cache ({cache}) and "
                                f"{why}; {fix} to cache it", "split")
        return DatasetError(f"hub dataset {ref.shown}: it is not in the hub cache ({cache}) and {why}; {fix} to cache "
                            f"it, or point HF_HUB_CACHE at a cache that holds it{'' if ref.revision else missing_hint}",
                            "revision" if ref.revision else "hf")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return DatasetError(f"hub dataset {ref.shown}: {type(exc).__name__}: {first}"[:400], "hf")


def fetch_split(ref: HubDataset, missing_hint: str = "") -> HubSplit:
    """The chosen split's Parquet files, downloaded (online) or found in the hub cache;
    :class:`DatasetError` in one line otherwise. ``missing_hint`` ends the messages that say the
    id names nothing (the spec layer: "and no local folder ...")."""
    hub = _hub()
    revision = ref.revision or "main"
    kwargs = {"repo_type": "dataset"}
    try:
        folder = hub.snapshot_download(ref.repo_id, revision=revision, allow_patterns=["README.md"], **kwargs)
    except Exception as exc:  # noqa: BLE001 - the hub client's errors, mapped to one line
        raise _failure(hub, ref, exc, missing_hint) from None
    files, complete = _listing(hub, ref, folder)
    card = os.path.join(folder, "README.md")
    readme = open(card, encoding="utf-8").read() if os.path.isfile(card) else None
    try:
        config, split, chosen = choose(layout(files, readme, revision), ref.shown, ref.config, ref.split)
    except DatasetError as exc:
        if complete:
            raise
        raise DatasetError(f"{exc} (only the files in the hub cache are listed)", exc.field) from None
    try:
        # The commit the card came from, so the split's files are the same commit's.
        hub.snapshot_download(ref.repo_id, revision=os.path.basename(folder),
                              allow_patterns=[globlib.escape(f) for f in chosen], **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise _failure(hub, ref, exc, "", split) from None
    local = [os.path.join(folder, *f.split("/")) for f in chosen]
    missing = [f for f, p in zip(chosen, local) if not os.path.isfile(p)]
    if missing:
        raise DatasetError(f"hub dataset {ref.shown}: split '{split}' is not in the hub cache ({len(missing)} of its "
                           f"files missing, e.g. {missing[0]}) and the hub did not send it", "split")
    return HubSplit(tuple(local), tuple(chosen), config, split, folder)


def load_hub(ref: HubDataset, columns: Columns, *, store: Store | None = None, missing_hint: str = ""
             ) -> tuple[list[Sample], str]:
    """The samples of a hub dataset's split (named ``owner/name/<file in the repo>#<row>``
    unless ``columns: {key: ...}`` names them), and the snapshot folder."""
    got = fetch_split(ref, missing_hint)
    named = [(path, f"{ref.repo_id}/{name}") for path, name in zip(got.files, got.names)]
    return parquet_samples(named, columns, store or Store()), got.folder


__all__ = ["CONVERTED", "HubDataset", "HubSplit", "fetch_split", "load_hub", "looks_like_repo_id"]
