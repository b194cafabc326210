"""Where a search's learning curves are logged, and how they are read back.

``gridsearch curve`` fits a search's best candidates on growing shares of each fold's
train rows. Its records live in a log of their own, ``<search log>/curve/`` (the same
:class:`~gridsearch.log.runlog.RunLog` format), so the search's own leaderboard, ``cv_results``
and export never see them; the report reads them from there. Each record is one
(candidate, ``fit_rows``, fold): its ``fold`` is the search's fold, ``fit_rows`` the rows it
trained on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from gridsearch.log.runlog import read_log

CURVE_DIR = "curve"
FIT_KEY = ["candidate_id", "fit_rows", "fold"]  # what identifies a learning-curve fit


def curve_log(search_log: str | os.PathLike[str]) -> Path:
    """The learning-curve log of the search logged at ``search_log``."""
    return Path(search_log) / CURVE_DIR


def curve_records(search_log: str | os.PathLike[str]) -> pd.DataFrame | None:
    """The learning-curve records of a search, the last one of each fit (None when it has none)."""
    path = curve_log(search_log)
    if not path.is_dir():
        return None
    records = read_log(path)
    return records.drop_duplicates(FIT_KEY, keep="last").reset_index(drop=True) if len(records) else None
