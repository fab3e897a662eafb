"""An audit file as pytest's File: its spec, its nodes, its evaluator and its datasets' passes."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import pytest

from vitaudit.audit.session import warm_imports

from .collect import AuditItem, ImageNode, SpecErrorItem, audit_session
from .identity import project_relative

if TYPE_CHECKING:
    from vitaudit.spec import AuditSpec, Expectation


class AuditFile(pytest.File):
    """One ``audit_*.yaml`` file."""

    spec: "AuditSpec"

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        from vitaudit.spec import parse_audit_file

        self.spec = parse_audit_file(self.path)
        self.rel = project_relative(self.config, self.path)  # see .identity
        session = audit_session(self.config)
        if session.update_baselines:
            from vitaudit.audit.value_baselines import stale_keys

            stale = stale_keys(self.spec)
            if stale:
                session.outbox.stale.append({"file": str(self.path.absolute()), "rel": self.rel, "keys": stale,
                                             "prune": not self.spec.errors})
        if self.spec.expectations:
            cams = any(m.method not in ("attention", "rollout") for e in self.spec.expectations for m in e.maps)
            warm_imports(["vitaudit.engine"] + (["vitaudit.explainers.gradcam_lib"] if cams else []) + ["vitaudit.report"])
        for err in self.spec.errors:
            yield SpecErrorItem.from_parent(self, name=f"error@L{err.line}", error=err)
        by_image: dict[str, list["Expectation"]] = {}
        for exp in self.spec.expectations:
            by_image.setdefault(exp.image, []).append(exp)
        for image, exps in by_image.items():
            if exps[0].dataset is not None:
                from .dataset_items import DatasetNode

                yield DatasetNode.from_parent(self, name=image, dataset=self.spec.datasets[image], expectations=exps)
            else:
                yield ImageNode.from_parent(self, name=image, expectations=exps)

    def dataset_run(self, key: str):
        """The pass over dataset ``key`` for every expectation of this file on it (run once). On
        Ray, the first call runs every dataset of the file in one pipeline (its actors start and
        load the models once) and keeps each run for its items."""
        runs = getattr(self, "_dataset_runs", None)
        if runs is None:
            runs = self._dataset_runs = {}
        if key not in runs:
            from vitaudit.audit.dataset_pass import run_dataset
            from .progress import Progress

            ev = self.evaluator()
            # only the expectations this session runs (-k, --lf, --deselect leave the others out)
            chosen = {it.expectation.id for it in getattr(self.session, "items", [])
                      if isinstance(it, AuditItem) and it.parent.parent is self}

            def exps_of(k: str) -> list:
                return [e for e in self.spec.expectations if e.dataset == k and (not chosen or e.id in chosen)]

            exps = exps_of(key)
            if self._executor(exps) == "ray":
                from vitaudit.audit.ray_pass import run_datasets_ray

                from .options import ray_options

                keys = [key] + [k for k in self.spec.datasets if k != key and k not in runs and exps_of(k)
                                and self._executor(exps_of(k)) == "ray"]
                total = sum(len(self.spec.datasets[k].samples) for k in keys)
                progress = Progress(self.config, f"{self.rel}::{key}" + (f" (+{len(keys) - 1} datasets)"
                                                                          if len(keys) > 1 else ""))
                done = run_datasets_ray(ev, [(self.spec.datasets[k], exps_of(k)) for k in keys],
                                        options=ray_options(self.config), batch_size=ev.session.batch_size,
                                        progress=progress)
            else:
                keys, total = [key], len(self.spec.datasets[key].samples)
                progress = Progress(self.config, f"{self.rel}::{key}")
                done = [run_dataset(ev, self.spec.datasets[key], exps, batch_size=ev.session.batch_size,
                                    progress=progress)]
            for k, run in zip(keys, done):
                runs[k] = run
                ev.session.outbox.executors.append({"executor": run.executor, "address": run.address,
                                                    "workers": list(run.workers)})
            progress.close(total, total)
        return runs[key]

    def _executor(self, exps: list["Expectation"]) -> str:
        """``--audit-executor``, except that writing baseline maps (``--audit-update-baselines``) runs
        here, beside the audit file, never on a cluster's nodes."""
        from .options import executor

        chosen = executor(self.config)
        if chosen == "ray" and audit_session(self.config).update_baselines and \
                any(e.kind == "baseline" for e in exps):
            return "local"
        return chosen

    def evaluator(self):
        ev = getattr(self, "_evaluator", None)
        if ev is None:
            from vitaudit.audit.evaluate import Evaluator

            ev = self._evaluator = Evaluator(self.spec, audit_session(self.config))
        return ev
