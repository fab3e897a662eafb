"""Repository-level pytest configuration.

The vitaudit plugin needs nothing here: installing the package registers it (``pytest11``
entry point), so ``pytest audits/`` collects the audit files on its own. This file only keeps
the training and benchmark scripts out of a bare ``pytest`` run.
"""
collect_ignore = ["fixtures", "benchmarks", "reports"]
