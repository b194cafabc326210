"""Which registry models load without running code they hold, and loading those with skops alone.

Unpickling runs whatever the file asks for: a model saved with pickle or cloudpickle (MLflow's
sklearn formats other than skops), a ``python_function`` model with a ``python_model`` or a
model-from-code file, and the other flavours' loaders can all run code of whoever logged the
model. skops rebuilds only the types it is told to trust, but MLflow reads that list from the
model's own MLmodel file, so a crafted model can list ``builtins.exec``. Here the MLmodel file
is read (YAML, nothing deserialized) and the model is refused unless it is an sklearn model
saved with skops whose extra trusted types are all of modules we accept:

- numpy, scipy, scikit-learn and pandas, what an sklearn model is made of, and this project
  (kampai, gridsearch);
- the model's own code modules (``code_modules`` in its metadata, the code it ships) that are
  code no index serves (:func:`~kampai.packaging.ships_as_code`: a module on ``sys.path``, a
  checkout) and are installed here: they are imported from here, never from the model.

Never the standard library (``builtins.eval``, ``os.system``, ``subprocess.Popen``),
``__main__``, or any other package. Such a model is loaded by ``skops.io.load`` with exactly
its checked list, its shipped code left off ``sys.path``, and wrapped in MLflow's
``PyFuncModel`` as MLflow's sklearn flavour wraps it, so its predictions pass the same schema
enforcement as those of ``mlflow models serve``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kampai.errors import UntrustedModelError
from kampai.packaging import installed_sources, ships_as_code

ACCEPTED_PACKAGES = ("numpy", "scipy", "sklearn", "pandas", "kampai", "gridsearch")
_UNPICKLES = "and unpickling runs any code the file holds"


def untrusted_types(types: Iterable[str], code_modules: Iterable[str] = ()) -> list[str]:
    """The names among ``types`` (``module.Class`` or ``module.function``) that skops must not be told to trust.

    ``code_modules`` are the modules the model ships; see the module docstring for the rule.
    """
    modules = set(code_modules)
    return [name for name in types
            if name.partition(".")[0] not in ACCEPTED_PACKAGES and not _own_code(name.rpartition(".")[0], modules)]


def _own_code(module: str, code_modules: set[str]) -> bool:
    """``module`` is one the model ships, no index serves, and this environment imports itself."""
    return module in code_modules and ships_as_code(module) and installed_sources([module]) is not None


def code_on_load(model: Any) -> str | None:
    """Why loading ``model`` (an ``mlflow.models.Model``, its MLmodel file) would run code it holds; None if it would not."""
    flavors = model.flavors
    loader = flavors.get("python_function", {}).get("loader_module")
    if loader == "mlflow.pyfunc.model":
        return f"it is a python_function model whose python_model is cloudpickled (or a code file it runs), {_UNPICKLES}"
    if loader != "mlflow.sklearn" or "sklearn" not in flavors:
        return (f"it is loaded by {loader or 'no python_function loader'} (flavours {', '.join(flavors)}), "
                "which may unpickle or import its code")
    sklearn = flavors["sklearn"]
    serialization = sklearn.get("serialization_format", "pickle")
    if serialization != "skops":
        return f"its sklearn model is saved with {serialization}, {_UNPICKLES}"
    types = sklearn.get("skops_trusted_types") or []
    if not isinstance(types, list) or not all(isinstance(name, str) for name in types):
        return f"its skops_trusted_types is {types!r}, not a list of type names"
    code_modules = (model.metadata or {}).get("code_modules") or []
    untrusted = untrusted_types(types, [name for name in code_modules if isinstance(name, str)] if isinstance(code_modules, list) else [])
    if untrusted:
        return (f"it tells skops to trust {', '.join(untrusted)}, not a type of {', '.join(ACCEPTED_PACKAGES)} "
                "or of a code module of the model installed here")
    return None


def load_without_code(uri: str, local: Path) -> Any:
    """The ``PyFuncModel`` of the model downloaded to ``local``, loaded by skops with its checked trusted types.

    Raises
    ------
    UntrustedModelError
        When loading it would run code it holds (:func:`code_on_load`); nothing is deserialized.
    """
    import skops.io
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel

    model = Model.load(str(local))
    reason = code_on_load(model)
    if reason:
        raise UntrustedModelError(uri, reason)
    pyfunc = model.flavors["python_function"]
    sklearn_model = skops.io.load(local / pyfunc["model_path"], trusted=model.flavors["sklearn"].get("skops_trusted_types") or [])
    return PyFuncModel(model_meta=model, model_impl=_SklearnPyfunc(sklearn_model, pyfunc.get("predict_fn", "predict")),
                       model_id=model.model_id)


class _SklearnPyfunc:
    """What MLflow's sklearn flavour hands ``PyFuncModel``: the method the model was logged with, the raw model."""

    def __init__(self, model: Any, method: str) -> None:
        self.model, self.method = model, method

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return getattr(self.model, self.method)(data)

    def get_raw_model(self) -> Any:
        return self.model
