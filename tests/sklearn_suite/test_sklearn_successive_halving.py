"""``sklearn/model_selection/tests/test_successive_halving.py``, as installed, with the halving classes bound to ours
(exclusions: :data:`tests.sklearn_suite.conftest.EXCLUDED`)."""

from tests.sklearn_suite._suite import load_suite

load_suite("model_selection/tests/test_successive_halving.py", "from gridsearch import HalvingGridSearchCV, HalvingRandomSearchCV", globals())
