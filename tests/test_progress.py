"""Progress of a long dataset pass: nothing for short passes, one rewritten line on a terminal,
a line every interval elsewhere, never from an xdist worker, capture suspended while writing."""
from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

from vitaudit.plugin.progress import Progress, progress_line


class Reporter:
    def __init__(self, tty: bool, open_line: int = 0):
        self.isatty = tty
        self.out: list[tuple[str, str]] = []
        self._tw = SimpleNamespace(width_of_current_line=open_line)
        self.currentfspath = None

    def ensure_newline(self) -> None:
        self.out.append(("newline", ""))

    def rewrite(self, line: str, erase: bool = False) -> None:
        self.out.append(("rewrite", line))

    def write(self, text: str) -> None:
        self.out.append(("write", text))

    def write_line(self, line: str) -> None:
        self.out.append(("line", line))


class Capture:
    def __init__(self) -> None:
        self.suspended = 0

    @contextmanager
    def global_and_fixture_disabled(self):
        self.suspended += 1
        yield


def make(tty: bool, worker: bool = False, verbose: int = 0):
    reporter, capture = Reporter(tty), Capture()
    plugins = {"terminalreporter": reporter, "capturemanager": capture}
    config = SimpleNamespace(pluginmanager=SimpleNamespace(get_plugin=plugins.get),
                             getoption=lambda name, default=None: verbose)
    if worker:
        config.workerinput = {"workerid": "gw0"}
    now = [0.0]
    progress = Progress(config, "audit_x.yaml::scenes", clock=lambda: now[0])
    return progress, reporter, capture, now


def test_progress_line() -> None:
    assert progress_line("s", 250, 1000, 5.0) == "s: 250/1000 images, 50.0 images/s, 15s left"
    assert progress_line("s", 1000, 1000, 125.0) == "s: 1000/1000 images, 8.0 images/s in 2m05s"
    # on a Ray cluster: how many workers sent rows so far
    assert progress_line("s", 250, 1000, 5.0, workers=8) == "s: 250/1000 images, 50.0 images/s on 8 workers, 15s left"
    assert progress_line("s", 250, 1000, 5.0, workers=1) == "s: 250/1000 images, 50.0 images/s on 1 worker, 15s left"


def test_short_passes_show_nothing() -> None:
    progress, reporter, _, now = make(tty=False)
    now[0] = 2.0
    progress(500, 1000)
    progress.close(1000, 1000)
    assert reporter.out == []


def test_not_a_terminal_gets_a_line_every_interval() -> None:
    progress, reporter, capture, now = make(tty=False)
    for t, done in [(3.5, 100), (5.0, 150), (13.0, 400), (13.6, 410), (24.0, 800)]:
        now[0] = t
        progress(done, 1000)
    now[0] = 30.0
    progress.close(1000, 1000)
    lines = [text for kind, text in reporter.out if kind == "line"]
    assert lines == ["audit_x.yaml::scenes: 100/1000 images, 28.6 images/s, 32s left",
                     # 10 s after the first line; the rate counts from the first batch (310 in 10.1 s)
                     "audit_x.yaml::scenes: 410/1000 images, 30.7 images/s, 19s left",
                     "audit_x.yaml::scenes: 800/1000 images, 34.1 images/s, 6s left",
                     "audit_x.yaml::scenes: 1000/1000 images, 33.3 images/s in 30s"]
    assert reporter.out[0] == ("newline", "")  # pytest's line of dots is ended first
    assert capture.suspended == 4


def test_a_terminal_rewrites_one_line() -> None:
    progress, reporter, _, now = make(tty=True)
    for t, done in [(3.1, 10), (3.2, 11), (3.7, 20)]:
        now[0] = t
        progress(done, 100)
    progress.close(100, 100)
    kinds = [kind for kind, _ in reporter.out]
    assert kinds == ["newline", "rewrite", "rewrite", "rewrite", "write"]
    assert reporter.out[-1] == ("write", "\n")


def test_xdist_workers_and_quiet_runs_show_nothing() -> None:
    for progress, reporter, _, now in (make(tty=False, worker=True), make(tty=False, verbose=-2)):
        now[0] = 60.0
        progress(10, 100)
        progress.close(100, 100)
        assert reporter.out == []


def test_a_line_of_dots_left_open_by_an_earlier_pass_is_ended_first() -> None:
    progress, reporter, _, now = make(tty=False)
    reporter._tw.width_of_current_line = 12  # "............" after the previous dataset's line
    now[0] = 4.0
    progress(10, 100)
    assert reporter.out[:2] == [("write", "\n"), ("line", "audit_x.yaml::scenes: 10/100 images, 2.5 images/s, 36s left")]
