"""kampai.packaging: what a model carries and requires; and the project's own ranges and locks.

No MLflow here: the code and requirements of real fitted pipelines, modules written to
``tmp_path``, and the real pyproject.toml and lock files. A model loaded in a fresh
environment is tested in tests/gridsearch/test_portable.py.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from kampai.data import load_dataset
from kampai.packaging import installed_sources, model_code, pip_requirements, source_digest
from kampai.pipeline import taxifare_pipeline

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
OUR_MODULES = {"kampai", "kampai.data", "kampai.errors", "kampai.transformers"}


@pytest.fixture(scope="module")
def fitted():
    frame = load_dataset("synthetic-taxifare", rows=300, seed=3)
    return taxifare_pipeline().fit(frame.drop(columns=["fare_amount"]), frame["fare_amount"])


def _locked(path: Path) -> dict[str, list[Version]]:
    """Package name to the versions a lock pins (several when markers split them)."""
    pins: dict[str, list[Version]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            requirement = Requirement(line)
            pins.setdefault(_name(requirement.name), []).append(Version(next(iter(requirement.specifier)).version))
    return pins


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dependencies() -> list[Requirement]:
    return [Requirement(d) for d in PROJECT["dependencies"]] + [Requirement(d) for d in PROJECT["optional-dependencies"]["test"]]


def test_model_code_ships_our_modules_and_requires_only_index_distributions(fitted):
    code = model_code(fitted)
    assert set(code.sources) == OUR_MODULES  # kampai.transformers and what it imports, not the whole package
    assert all(path.is_file() and path.suffix == ".py" for path in code.sources.values())
    names = {_name(r.partition("==")[0]) for r in code.requirements}
    assert names == {"numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "skops"}  # pyarrow: kampai.data imports it
    assert "kampai-gridsearch" not in names
    for requirement in code.requirements:  # each pinned to what is installed, and installed from an index
        name, version = requirement.split("==")
        assert metadata.version(name) == version
        assert metadata.distribution(name).read_text("direct_url.json") is None
    assert pip_requirements(fitted) == list(code.requirements)


def test_model_code_follows_the_imports_of_a_module_on_sys_path(tmp_path, monkeypatch):
    (tmp_path / "helpers_for_test.py").write_text("import yaml\nSCALE = 2.0\n")
    (tmp_path / "custom_step_for_test.py").write_text(
        "from sklearn.base import BaseEstimator, TransformerMixin\n"
        "from helpers_for_test import SCALE\n"
        "class Doubler(TransformerMixin, BaseEstimator):\n"
        "    def fit(self, X, y=None):\n        return self\n"
        "    def transform(self, X):\n        from kampai.errors import KampaiError  # an import inside a function counts\n"
        "        return X * SCALE\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from custom_step_for_test import Doubler

    code = model_code(Pipeline([("double", Doubler()), ("model", Ridge())]))
    assert {"custom_step_for_test", "helpers_for_test", "kampai", "kampai.errors"} <= set(code.sources)
    assert "kampai.transformers" not in code.sources
    assert any(r.startswith("PyYAML==") for r in code.requirements)  # helpers_for_test imports yaml
    written = code.write(tmp_path / "shipped")
    assert sorted(Path(p).name for p in written) == ["custom_step_for_test.py", "helpers_for_test.py", "kampai"]
    assert (tmp_path / "shipped" / "kampai" / "errors.py").read_bytes() == (REPO / "kampai" / "errors.py").read_bytes()
    assert not (tmp_path / "shipped" / "kampai" / "data.py").exists()


def test_source_digest_names_the_exact_code(tmp_path, fitted):
    code = model_code(fitted)
    assert code.digest == source_digest(installed_sources(code.sources))  # what predict compares
    copy = tmp_path / "transformers.py"
    copy.write_bytes(code.sources["kampai.transformers"].read_bytes() + b"\n# edited\n")
    assert source_digest({**code.sources, "kampai.transformers": copy}) != code.digest
    assert installed_sources(["kampai.transformers", "no_such_module_here"]) is None


def test_runtime_dependencies_are_ranges_from_a_lower_bound():
    for requirement in (Requirement(d) for d in PROJECT["dependencies"]):
        operators = {spec.operator for spec in requirement.specifier}
        assert ">=" in operators and not operators & {"==", "===", "~="}, requirement
        if requirement.name not in ("dask", "distributed", "pyarrow"):  # calendar / release-count majors: no cap
            [lower] = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
            assert f"<{lower.major + 1}" in str(requirement.specifier), requirement


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-lowest.lock"])
def test_lock_pins_every_dependency_within_the_ranges(lock):
    pins = _locked(REPO / lock)
    for requirement in _dependencies():
        versions = pins.get(_name(requirement.name))
        assert versions, f"{lock} does not pin {requirement.name} (run make lock)"
        assert all(requirement.specifier.contains(v, prereleases=True) for v in versions), (requirement, versions)


def test_lowest_lock_pins_each_runtime_dependency_at_its_lower_bound():
    pins = _locked(REPO / "requirements-lowest.lock")
    for requirement in (Requirement(d) for d in PROJECT["dependencies"]):
        [lower] = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert pins[_name(requirement.name)] == [lower], requirement


def test_this_environment_runs_the_locked_versions():
    """CI's first venv is installed from requirements.lock; the workers' guard compares what is installed."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("not in a virtual environment")
    pins = _locked(REPO / "requirements.lock")
    lowest = _locked(REPO / "requirements-lowest.lock")
    for name in ("scikit-learn", "dask", "distributed", "mlflow", "pandas"):
        installed = Version(metadata.version(name))
        assert installed in pins[name] or installed in lowest[name], (name, installed)
