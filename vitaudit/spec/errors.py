"""Errors found in an audit file, and the "did you mean" helper used to word them."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class SpecError:
    """One problem in an audit file, at a 1-based line.

    ``image`` and ``text`` are set when the problem cost an expectation (the expectation's
    image key and its source text), so a consumer can show the lost expectation as a failing
    item; they are ``None`` for problems in declarations.
    """

    file: str
    line: int
    message: str
    image: str | None = None
    text: str | None = None

    def __post_init__(self) -> None:  # keep every report on one line, whatever the user wrote
        for name in ("message", "text"):
            value = getattr(self, name)
            if value is not None and ("\n" in value or "\r" in value):
                object.__setattr__(self, name, value.replace("\r", "\\r").replace("\n", "\\n"))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class SentenceError(ValueError):
    """Raised inside the parser for one bad expectation; turned into a :class:`SpecError`.

    ``line`` (when not ``None``) overrides the expectation's line, e.g. to point at the
    offending key of a structured expectation.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""`` if none is close."""
    if not isinstance(word, str):
        word = str(word)
    options = [c for c in choices if isinstance(c, str)]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in options}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_of(choices: Iterable[str]) -> str:
    """``"a, b or c"`` for messages."""
    items = [str(c) for c in choices]
    if not items:
        return "(none)"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]
