"""Model size per fit: the bytes of the fitted final estimator's arrays, measured cheaply and never failing a fit."""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor

from gridsearch.execute.sizes import model_size
from gridsearch.search.ensembles import truncated

X = np.random.default_rng(0).random((300, 6))
Y = X @ np.arange(6.0)


def test_a_linear_model_is_its_coefficients_and_intercept():
    model = Ridge().fit(X, Y)
    assert model_size(model) == model.coef_.nbytes  # intercept_ is a numpy scalar, not an array


def test_a_forest_counts_every_trees_nodes_and_values_and_a_truncated_view_only_its_trees():
    forest = RandomForestRegressor(n_estimators=20, max_depth=5, random_state=0).fit(X, Y)
    trees = sum(t.tree_.__getstate__()["nodes"].nbytes + t.tree_.__getstate__()["values"].nbytes for t in forest.estimators_)
    assert trees <= model_size(forest) <= trees * 1.05
    first_five = sum(t.tree_.__getstate__()["nodes"].nbytes + t.tree_.__getstate__()["values"].nbytes for t in forest.estimators_[:5])
    assert first_five <= model_size(truncated(forest, 5)) < model_size(forest) / 3


def test_models_keeping_arrays_elsewhere_are_counted():
    assert model_size(KNeighborsRegressor().fit(X, Y)) >= X.nbytes  # the training rows are the model
    boosted = HistGradientBoostingRegressor(max_iter=10).fit(X, Y)
    nodes = sum(p.nodes.nbytes for stage in boosted._predictors for p in stage)
    assert model_size(boosted) >= nodes


def test_sparse_matrices_shared_arrays_and_cycles_are_counted_once():
    class Holder:
        pass

    holder = Holder()
    matrix = sp.random(50, 40, density=0.1, format="csr", random_state=0)
    array = np.zeros(100)
    holder.matrix, holder.a, holder.b, holder.me = matrix, array, array, holder
    assert model_size(holder) == matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes + array.nbytes


def test_something_that_cannot_be_walked_is_nan_not_an_error():
    class Hostile:
        def __getattribute__(self, name: str) -> object:
            raise RuntimeError("no")

    assert math.isnan(model_size(Hostile()))


def test_measuring_a_forest_costs_a_small_fraction_of_fitting_it():
    start = time.perf_counter()
    forest = RandomForestRegressor(n_estimators=50, max_depth=8, random_state=0).fit(X, Y)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    model_size(forest)
    assert time.perf_counter() - start < fit / 10
