"""Scikit-learn's own tests of a module, run against our classes: the installed file, with names rebound.

The test file shipped in scikit-learn's wheel is read, an import of our classes is put
right after its imports (so that every test, parametrisation and helper sees ours), and
it is executed into the importing test module, where pytest collects it as our own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sklearn

_FIRST_DEFINITION = re.compile(r"^(def |class |@|[A-Za-z_][A-Za-z_0-9]* *=)", re.MULTILINE)


def load_suite(relative: str, rebind: str, into: dict[str, Any]) -> Path:
    """Execute scikit-learn's test file ``relative`` (e.g. ``model_selection/tests/test_search.py``)
    into the namespace ``into``, with the statement ``rebind`` run after its imports."""
    source = Path(sklearn.__file__).parent / relative
    text = source.read_text()
    first = _FIRST_DEFINITION.search(text)
    if first is None:
        raise ValueError(f"{source}: no definition after the imports")
    code = f"{text[:first.start()]}\n{rebind}\n{text[first.start():]}"
    exec(compile(code, str(source), "exec"), into)  # noqa: S102 - scikit-learn's own test file, from its wheel
    return source
