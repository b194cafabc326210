"""``sklearn/model_selection/tests/test_search.py``, as installed, with the four search classes
bound to ours (exclusions: :data:`tests.sklearn_suite.conftest.EXCLUDED`)."""

from tests.sklearn_suite._suite import load_suite

load_suite("model_selection/tests/test_search.py",
           "from gridsearch import GridSearchCV, HalvingGridSearchCV, HalvingRandomSearchCV, RandomizedSearchCV", globals())
