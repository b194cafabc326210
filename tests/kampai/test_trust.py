"""kampai.trust: which MLmodel files load without running code, read as MLflow reads them (no model needed)."""

from __future__ import annotations

import sys

import pytest
from mlflow.models import Model

from kampai.trust import ACCEPTED_PACKAGES, code_on_load, untrusted_types

OURS = ["kampai.transformers.Geohash", "kampai.transformers.HaversineDistance", "kampai.transformers.TimeFeatures"]


def _mlmodel(loader: str = "mlflow.sklearn", serialization: str | None = "skops", trusted: object = None, **metadata: object) -> Model:
    """An MLmodel as ``mlflow.sklearn.log_model`` writes it (the parts that decide how it loads); no format key for None."""
    sklearn = {"pickled_model": "model.skops", "skops_trusted_types": trusted}
    if serialization is not None:
        sklearn["serialization_format"] = serialization
    return Model.from_dict({"flavors": {"python_function": {"loader_module": loader, "model_path": "model.skops"}, "sklearn": sklearn},
                            "metadata": metadata or None})


def test_types_of_the_libraries_and_of_this_project_are_accepted():
    accepted = ["sklearn.pipeline.Pipeline", "numpy.float64", "scipy.sparse._csr.csr_matrix", "pandas.core.frame.DataFrame",
                *OURS, "gridsearch.search.stages.Precomputed"]
    assert untrusted_types(accepted) == []
    assert ACCEPTED_PACKAGES == ("numpy", "scipy", "sklearn", "pandas", "kampai", "gridsearch")


@pytest.mark.parametrize("name", ["builtins.eval", "builtins.exec", "os.system", "posix.system", "subprocess.Popen",
                                  "__main__.Trap", "cloudpickle.cloudpickle.subimport", "numpyx.evil.Thing"])
def test_the_standard_library_main_and_other_packages_are_never_accepted(name):
    # even when the model claims them as its own code: they are not code a model ships
    assert untrusted_types([name], code_modules=[name.rpartition(".")[0], "os", "builtins", "__main__", "cloudpickle"]) == [name]


def test_a_code_module_of_the_model_is_accepted_only_if_installed_here(tmp_path, monkeypatch):
    (tmp_path / "trust_user_features.py").write_text("class Ratio:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    own = "trust_user_features.Ratio"
    assert untrusted_types([own], code_modules=["trust_user_features"]) == []
    assert untrusted_types([own]) == [own]  # not one of the model's modules
    missing = "trust_not_installed_here.Ratio"
    assert untrusted_types([missing], code_modules=["trust_not_installed_here"]) == [missing]
    assert "trust_user_features" not in sys.modules  # deciding imports nothing


def test_a_skops_model_trusting_only_accepted_types_loads():
    assert code_on_load(_mlmodel(trusted=OURS, code_modules=["kampai", "kampai.transformers"])) is None
    assert code_on_load(_mlmodel()) is None  # skops's own defaults only


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (_mlmodel(serialization="cloudpickle"), "its sklearn model is saved with cloudpickle, and unpickling runs any code the file holds"),
        (_mlmodel(serialization=None), "its sklearn model is saved with pickle, "),  # MLflow's default when the key is missing
        (_mlmodel(loader="mlflow.pyfunc.model"), "it is a python_function model whose python_model is cloudpickled (or a code file it runs), and unpickling"),
        (_mlmodel(loader="mlflow.xgboost"), "it is loaded by mlflow.xgboost (flavours python_function, sklearn), which may unpickle"),
        (_mlmodel(trusted=[*OURS, "builtins.exec"]), "it tells skops to trust builtins.exec, not a type of numpy, scipy, sklearn, pandas"),
        (_mlmodel(trusted=True), "its skops_trusted_types is True, not a list of type names"),
    ],
)
def test_every_other_model_is_refused_with_the_reason(model, reason):
    assert reason in code_on_load(model)
