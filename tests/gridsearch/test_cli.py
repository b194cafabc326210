"""The command line: help, dry run, and one-line errors with exit status 2 that write nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _gridsearch(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gridsearch", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=300)


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]])
def test_help_explains_the_commands(args):
    done = _gridsearch(*args)
    assert done.returncode == 0
    assert "--set" in done.stdout or "run" in done.stdout
    assert "examples:" in done.stdout


def test_dry_run_counts_the_work_and_writes_nothing(write_config, tmp_path):
    done = _gridsearch("run", str(write_config()), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "valid. 6 candidates x 3 folds = 18 fits; 6 prefix tasks (2 per fold) on 4 raw stage tasks per fold" in done.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "cv.folds=1"], "cv.folds: expected an integer >= 2, found 1"),
        (["--set", "search.params={model__alpa: [1]}"], "search.params.model__alpa: unknown parameter; did you mean model__alpha?"),
        (["--set", "data.source=/no/such/file.csv"], "data.source:"),
        (["--set", "cv.folds"], "--set: cv.folds: expected KEY=VALUE"),
        (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_log(write_config, tmp_path, args, message):
    done = _gridsearch("run", str(write_config()), *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_run_prints_leaderboard_and_log_path(write_config, tmp_path):
    done = _gridsearch("run", str(write_config()), "--top", "3")
    assert done.returncode == 0, done.stderr
    assert "18 fits; raw stages: " in done.stdout and "best neg_root_mean_squared_error = " in done.stdout
    assert f"run log: {tmp_path / 'runs'}" in done.stdout
    board = done.stdout.split("rank")[1]
    assert len([line for line in board.splitlines() if "precision=" in line]) == 3
