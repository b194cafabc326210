"""The command line: help, dry run, and one-line errors with exit status 2 that write nothing.

Real ``python -m gridsearch`` processes check the entry point, what a fresh process prints
on its streams and a whole run; the other cases call :func:`gridsearch.cli.main` in this
process (the same parser and handlers, without ~3 s of imports each).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from gridsearch.cli import build_parser, main
from gridsearch.execute import executor

REPO = Path(__file__).resolve().parents[2]
# The commands every release has; new ones must be listed too (see the help test).
COMMANDS = ["run", "top", "show", "export", "cache", "promote", "predict", "registry"]
RUN_EXAMPLES = [
    "python -m gridsearch run conf/search.yaml",
    "python -m gridsearch run conf/search.yaml --set cv.folds=5 --set data.rows=20000",
    "python -m gridsearch run conf/search.yaml --scheduler tcp://127.0.0.1:8786",
    "python -m gridsearch run conf/search.yaml --dry-run",
    "python -m gridsearch run --resume runs/<search id>",
]
HEAVY_MODULES = {"distributed", "sklearn", "pandas", "pyarrow", "mlflow"}


def _gridsearch(*args: str, cwd: Path = REPO, python: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *python, "-m", "gridsearch", *args], cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=300)


def _commands() -> list[str]:
    """The subcommands the parser defines, in order."""
    [subcommands] = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return list(subcommands.choices)


def _sections(help_text: str) -> dict[str, str]:
    """The help's blocks by heading (``positional arguments``, ``options``, ``examples``)."""
    return dict(re.findall(r"^(\w[\w ]*):\n((?:(?: .*)?\n)*)", help_text + "\n", re.MULTILINE))


def test_top_level_help_lists_every_command_with_an_example_and_imports_nothing_heavy():
    done = _gridsearch("--help", python=("-X", "importtime"))
    assert done.returncode == 0, done.stderr
    sections = _sections(done.stdout)
    listed = re.findall(r"^    (\w+) +\w", sections["positional arguments"], re.MULTILINE)
    assert listed == _commands() and set(COMMANDS) <= set(listed)
    for command in listed:
        assert re.search(rf"^  python -m gridsearch {command} \S", sections["examples"], re.MULTILINE), command
    assert [line.strip() for line in sections["examples"].splitlines()][:5] == RUN_EXAMPLES
    imported = {line.split("|")[-1].strip().partition(".")[0] for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "gridsearch" in imported and not imported & HEAVY_MODULES, sorted(imported & HEAVY_MODULES)


def test_run_help_lists_its_options_and_examples():
    done = _gridsearch("run", "--help")
    assert done.returncode == 0, done.stderr
    sections = _sections(done.stdout)
    for option in ("--set KEY=VALUE", "--resume LOG", "--scheduler ADDRESS", "--dry-run", "--workers N", "--top N", "--quiet"):
        assert re.search(rf"^  {re.escape(option)}  ", sections["options"], re.MULTILINE), option
    assert "override a config value (YAML syntax)" in sections["options"]
    assert [line.strip() for line in sections["examples"].splitlines() if line.strip()] == RUN_EXAMPLES


def test_dry_run_counts_the_work_and_writes_nothing(config_file, tmp_path, capfd):
    path = config_file()
    assert main(["run", str(path), "--dry-run"]) == 0
    out, err = capfd.readouterr()
    assert out.splitlines()[0] == (f"{path}: valid. 6 candidates x 3 folds = 18 fits; 6 prefix tasks (2 per fold) "
                                   "on 4 raw stage tasks per fold, each prefix reused by 3.0 fits on average")
    assert re.fullmatch(rf"search id ([0-9a-f]{{16}}); run log would be {re.escape(str(tmp_path / 'runs'))}/\1", out.splitlines()[1])
    assert err == ""
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "cv.folds=1"], "cv.folds: expected an integer >= 2, found 1"),
        (["--set", "search.params={model__alpa: [1]}"], "search.params.model__alpa: unknown parameter; did you mean model__alpha?"),
        (["--set", "data.source=/no/such/file.csv"], "data.source: "),
        (["--set", "cv.folds"], "--set: cv.folds: expected KEY=VALUE"),
        (["--resume", "runs/x"], "give a config file (python -m gridsearch run conf/search.yaml) or --resume LOG, not both"),
        # A refused port is retried until the timeout (see distributed.comm.core.connect): 1 s here instead of 10.
        (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 1s"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_log(config_file, tmp_path, capfd, monkeypatch, args, message):
    monkeypatch.setattr(executor, "CONNECT_TIMEOUT", "1s")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a warning would be printed on stderr by a real process
        status = main(["run", str(config_file()), *args])
    _, err = capfd.readouterr()
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert [str(w.message) for w in caught] == []
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_input_in_a_fresh_process_is_one_line_on_stderr_and_nothing_else(config_file, tmp_path):
    done = _gridsearch("run", str(config_file()), "--set", "cv.folds=1")
    assert done.returncode == 2
    assert done.stderr == f"error: {tmp_path / 'search.yaml'} (with overrides): cv.folds: expected an integer >= 2, found 1 (must be >= 2)\n"
    assert done.stdout == "" and not (tmp_path / "runs").exists()


def test_run_prints_leaderboard_and_log_path(write_config, tmp_path):
    done = _gridsearch("run", str(write_config()), "--top", "3")
    assert done.returncode == 0, done.stderr
    assert "18 fits; raw stages: 12 computed, 0 from the memo" in done.stdout
    assert "best neg_root_mean_squared_error = " in done.stdout
    [log] = (tmp_path / "runs").iterdir()
    assert f"run log: {log}" in done.stdout
    board = done.stdout.split("rank")[1]
    assert len([line for line in board.splitlines() if "precision=" in line]) == 3
