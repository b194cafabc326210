"""Scikit-learn's search tests run on the session's cluster, with the tests we exclude listed once, each with its reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

_CALLBACKS = ("scikit-learn 1.9's experimental callback API (sklearn.callback) is driven from inside BaseSearchCV's own "
              "fit loop, which the engine replaces; callbacks are not supported")
_IN_PROCESS = ("the test reads state that one object mutates across all fits in the test's process (a counter, a registry), "
               "which holds in scikit-learn's sequential n_jobs=1 loop only; on Dask workers each task has its own copy")

# The tests of test_search.py we do not run, each with its reason.
EXCLUDED: dict[str, str] = {
    "test_search_callbacks_no_propagation": _CALLBACKS,
    "test_search_callbacks_propagation": _CALLBACKS,
    "test_search_callbacks_receive_sample_weight": _CALLBACKS,
    "test_search_callbacks_with_partial_fit_failures": _CALLBACKS,
    "test_searchcv_raise_warning_with_non_finite_score": _IN_PROCESS + " (FailingScorer counts its calls to fail every 5th)",
    "test_multi_metric_search_forwards_metadata": _IN_PROCESS + " (ConsumingScorer records the metadata it got in a registry)",
    # test_successive_halving.py
    "test_cv_results": _IN_PROCESS + " (the scorer draws from one RandomState shared by all fits, to avoid ties)",
    "test_base_estimator_inputs": _IN_PROCESS + " (the estimator appends the rows it sees to lists of the test)",
}


@pytest.fixture(autouse=True, scope="module")
def _default_client(cluster_address: str) -> Iterator[None]:
    """The session's cluster as the default client, which the search classes use when given none."""
    from distributed import Client

    with Client(cluster_address):
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = EXCLUDED.get(getattr(item, "originalname", item.name)) or EXCLUDED.get(item.name)
        if reason is not None and "sklearn_suite" in str(item.path):
            item.add_marker(pytest.mark.skip(reason=f"excluded: {reason}"))
