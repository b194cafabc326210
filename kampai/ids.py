"""Content ids and did-you-mean: shared by the memo, the search space, the plan and the log.

An id is a hash of what defines a piece of work, never a counter, so that resume, dedup and
caching agree without bookkeeping.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def content_id(*parts: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of a sha256 of the JSON form of ``parts`` (keys sorted)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=value_text)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def value_text(value: Any) -> str:
    """The text that stands for a value JSON cannot hold: its repr, or for an array (whose repr
    elides the middle of a long one) a hash of its type, shape and bytes."""
    if isinstance(value, np.ndarray):
        return f"ndarray({value.dtype},{value.shape},{hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]})"
    return repr(value)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean X?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def matching(ids: Iterable[str], prefix: str) -> list[str]:
    """The distinct ``ids`` that start with ``prefix`` (spaces and case ignored), as git matches commits."""
    wanted = prefix.strip().lower()
    return list(dict.fromkeys(i for i in ids if wanted and i.startswith(wanted)))
