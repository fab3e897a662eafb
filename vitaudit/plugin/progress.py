"""Progress of a long dataset pass on the terminal, without garbling pytest's own output.

Written through pytest's terminal reporter with output capture suspended (as pytest's live
logging does). On a terminal one line is rewritten in place; elsewhere (CI logs) a line is
printed every ``interval`` seconds. Nothing is shown for passes shorter than ``delay``.
"""
from __future__ import annotations

import time
from typing import Any

import pytest


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(what: str, done: int, total: int, elapsed: float, rate: float | None = None,
                  workers: int | None = None) -> str:
    """``scenes: 512/1000 images, 85.3 images/s, 6s left`` (``rate`` defaults to the average);
    ``workers``: the Ray workers that sent rows so far (``..., 85.3 images/s on 4 workers, ...``)."""
    if rate is None:
        rate = done / elapsed if elapsed > 0 else 0.0
    left = (total - done) / rate if rate > 0 else float("nan")
    tail = f", {_fmt_time(left)} left" if done < total and rate > 0 else f" in {_fmt_time(elapsed)}"
    on = f" on {workers} worker{'s' if workers != 1 else ''}" if workers else ""
    return f"{what}: {done}/{total} images, {rate:.1f} images/s{on}{tail}"


class Progress:
    """Call with ``(done, total)`` (and ``workers=N`` on a cluster) as a pass advances; :meth:`close` when it ends."""

    def __init__(self, config: pytest.Config, what: str, *, delay: float = 3.0, interval: float = 10.0,
                 clock=time.monotonic):
        self.config = config
        self.what = what
        self.delay = delay
        self.interval = interval
        self.clock = clock
        self.start = clock()
        self.last = None  # when the last line was written
        self.first: tuple[float, int] | None = None  # (time, images done) at the first batch
        self.shown = False
        self.workers: int | None = None
        self.reporter: Any = config.pluginmanager.get_plugin("terminalreporter")
        self.capture: Any = config.pluginmanager.get_plugin("capturemanager")
        self.tty = bool(self.reporter is not None and getattr(self.reporter, "isatty", False))
        self.quiet = self.reporter is None or config.getoption("verbose", 0) < -1 or \
            getattr(config, "workerinput", None) is not None  # xdist workers have no terminal

    def __call__(self, done: int, total: int, workers: int | None = None) -> None:
        if workers is not None:
            self.workers = workers
        now = self.clock()
        if self.first is None:  # the rate counts from the first batch done, after models loaded
            self.first = (now, done)
        elapsed = now - self.start
        if self.quiet or elapsed < self.delay or done >= total:
            return
        if self.last is not None and now - self.last < (0.5 if self.tty else self.interval):
            return
        self.last = now
        t0, d0 = self.first
        rate = (done - d0) / (now - t0) if now > t0 and done > d0 else None
        self._write(progress_line(self.what, done, total, elapsed, rate, self.workers), final=False)

    def close(self, done: int, total: int) -> None:
        """Say how the pass ended, if progress was shown at all."""
        if self.shown:
            self._write(progress_line(self.what, done, total, self.clock() - self.start, workers=self.workers),
                        final=True)

    def _write(self, line: str, final: bool) -> None:
        tr = self.reporter
        suspend = self.capture.global_and_fixture_disabled() if self.capture is not None else _null()
        with suspend:
            if not self.shown:
                _end_line(tr)
            self.shown = True
            if self.tty:
                tr.rewrite(line, erase=True)
                if final:
                    tr.write("\n")
            else:
                tr.write_line(line)


def _end_line(tr: Any) -> None:
    """End pytest's line of progress dots, if one is open (``ensure_newline`` only knows about a
    line that began with a file name, not one a pass before this interrupted)."""
    tw = getattr(tr, "_tw", None)
    if tw is not None and getattr(tw, "width_of_current_line", 0):
        tr.write("\n")
        tr.currentfspath = None
    else:
        tr.ensure_newline()


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
