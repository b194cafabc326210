"""What runs on the workers, called in-process: raw stages, prefixes and fit batches; failures as records."""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import sparse
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin, clone
from sklearn.datasets import make_regression
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.metrics import get_scorer
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import gridsearch
from gridsearch.execute.tasks import FitSetup, Prepared, StageResult, fit_batch, prepare, run_stage
from gridsearch.log.records import FitItem, FitRecord, RecordStamp, Status
from gridsearch.search.dataset import Dataset
from gridsearch.search.plan import FitFamily, PrepGroup, RawStage, make_plan
from gridsearch.search.prepare import PreparedSearch
from gridsearch.search.space import Candidate, resolve, step_names
from tests.conftest import BASE_CONFIG

SCORING = ("neg_root_mean_squared_error", "r2")
ENSEMBLES = {"sklearn.ensemble.RandomForestRegressor": RandomForestRegressor, "sklearn.ensemble.GradientBoostingRegressor": GradientBoostingRegressor}


class _Exploding(RegressorMixin, BaseEstimator):
    """A final estimator (or stage) whose fit always raises."""

    def fit(self, X: Any, y: Any = None) -> _Exploding:
        raise RuntimeError("boom in fit")


class _ExplodingStage(TransformerMixin, _Exploding):
    """A raw stage whose fit always raises."""


class _Noisy(Ridge):
    """A Ridge that warns while it fits: one warning twice (with a second line), and another."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> _Noisy:
        for _ in range(2):
            warnings.warn("solver is tired\nsecond line of detail", UserWarning, stacklevel=1)
        warnings.warn("did not converge", ConvergenceWarning, stacklevel=1)
        return super().fit(X, y, sample_weight)


class _Terse(Ridge):
    """A Ridge that warns with an empty message while it fits."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> _Terse:
        warnings.warn(UserWarning(), stacklevel=1)
        return super().fit(X, y, sample_weight)


def _search(directory: Path, rows: int, params: Any) -> PreparedSearch:
    """A search prepared from :data:`BASE_CONFIG` with no cluster, no memo, and its log under ``directory``."""
    config = copy.deepcopy(BASE_CONFIG)
    config["data"]["rows"] = rows
    config["search"] = {"params": params}
    config.update({"cluster": {"address": None}, "cache": {"dir": None}, "log": str(directory / "runs")})
    path = directory / "search.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return gridsearch.prepare_search(path)


@pytest.fixture(scope="module")
def taxi(tmp_path_factory: pytest.TempPathFactory) -> PreparedSearch:
    """The taxi search of :data:`BASE_CONFIG` on 600 rows: 2 geohash precisions x 3 Ridge alphas, 3 folds."""
    return _search(tmp_path_factory.mktemp("taxi"), 600, BASE_CONFIG["search"]["params"])


@pytest.fixture(scope="module")
def ensembles(tmp_path_factory: pytest.TempPathFactory) -> PreparedSearch:
    """A forest and a boosting model, each with n_estimators 10, 5 and 3: one group, two families of three."""
    params = {"model": list(ENSEMBLES), "model__n_estimators": [10, 5, 3], "model__random_state": [0]}
    return _search(tmp_path_factory.mktemp("ensembles"), 300, params)


@pytest.fixture(scope="module")
def taxi_stages(taxi: PreparedSearch) -> dict[str, StageResult]:
    """The raw stages of the taxi search's first group on fold 0."""
    return _stages(taxi, taxi.plan.groups[0], 0)


@pytest.fixture(scope="module")
def taxi_fold0(taxi: PreparedSearch, taxi_stages: dict[str, StageResult]) -> Prepared:
    """The taxi search's first group prepared on fold 0."""
    return prepare(taxi.dataset, 0, taxi.pipeline, taxi.plan.groups[0].params, taxi_stages)


@pytest.fixture(scope="module")
def ensembles_fold0(ensembles: PreparedSearch) -> Prepared:
    """The ensembles search's only group prepared on fold 0."""
    return _prepared(ensembles, ensembles.plan.groups[0], 0)


def _stamp(search: PreparedSearch, error_score: float = math.nan) -> RecordStamp:
    return RecordStamp(search.search_id, search.inputs.data_fingerprint, None, None, "0", search.config.scoring, error_score)


def _stages(search: PreparedSearch, group: PrepGroup, fold: int) -> dict[str, StageResult]:
    """A group's raw stages on a fold, without a memo, keyed as the executor keys them."""
    rows_id = f"{search.inputs.rows_id}-{fold}"
    return {stage.path: run_stage(search.dataset, fold, stage, rows_id, None) for stage in group.stages}


def _prepared(search: PreparedSearch, group: PrepGroup, fold: int) -> Prepared:
    return prepare(search.dataset, fold, search.pipeline, group.params, _stages(search, group, fold))


def _dense(matrix: Any) -> np.ndarray:
    return matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)


def _failing_family(name: str, n_items: int = 2) -> FitFamily:
    """A family whose final estimator raises in fit, with ``n_items`` members sharing that fit."""
    items = tuple(FitItem(f"{name}-{k}", {"model": _Exploding()}, json.dumps({"model": name, "k": k}), 10 - k) for k in range(n_items))
    return FitFamily("exploding", items)


def _scores(estimator: BaseEstimator, X: Any, y: np.ndarray) -> dict[str, float]:
    return {name: float(get_scorer(name)(estimator, X, y)) for name in SCORING}


def test_run_stage_fits_on_the_folds_train_rows_and_transforms_both_sides(taxi: PreparedSearch,
                                                                           taxi_stages: dict[str, StageResult]) -> None:
    """Each raw stage's outputs have as many rows as the fold's train and test sides."""
    train, test = taxi.dataset.folds[0]
    assert list(taxi_stages) == ["features__time", "features__distance", "features__geohash"]
    for result in taxi_stages.values():
        assert result.error is None and not result.from_memo and result.seconds > 0
        assert result.output.train.shape[0] == len(train) and result.output.test.shape[0] == len(test)


def test_run_stage_loads_the_second_call_from_the_memo(taxi: PreparedSearch, tmp_path: Path) -> None:
    """Through a memo directory the second call loads the stored output, equal to the computed one."""
    stage = next(stage for stage in taxi.plan.groups[0].stages if stage.path == "features__geohash")
    first = run_stage(taxi.dataset, 0, stage, f"{taxi.inputs.rows_id}-0", str(tmp_path / "memo"))
    second = run_stage(taxi.dataset, 0, stage, f"{taxi.inputs.rows_id}-0", str(tmp_path / "memo"))
    assert (first.from_memo, second.from_memo) == (False, True)
    assert second.error is None and any((tmp_path / "memo").rglob("output.pkl"))
    np.testing.assert_array_equal(_dense(second.output.train), _dense(first.output.train))
    np.testing.assert_array_equal(_dense(second.output.test), _dense(first.output.test))
    other_fold = run_stage(taxi.dataset, 1, stage, f"{taxi.inputs.rows_id}-1", str(tmp_path / "memo"))
    assert not other_fold.from_memo


def test_run_stage_memo_tells_apart_the_columns_a_stage_reads(taxi: PreparedSearch, tmp_path: Path) -> None:
    """The same stage on other columns (e.g. after an edit of the pipeline factory) is computed, not loaded."""
    memo, rows_id = str(tmp_path / "memo"), f"{taxi.inputs.rows_id}-0"
    X_train = taxi.dataset.fold(0)[0]
    first = run_stage(taxi.dataset, 0, RawStage("features__scaled", {}, StandardScaler(), ["passenger_count"], "a"), rows_id, memo)
    other = run_stage(taxi.dataset, 0, RawStage("features__scaled", {}, StandardScaler(), ["pickup_longitude"], "b"), rows_id, memo)
    assert not first.from_memo and not other.from_memo
    np.testing.assert_allclose(other.output.train, StandardScaler().fit_transform(X_train[["pickup_longitude"]]), rtol=0, atol=1e-12)
    again = run_stage(taxi.dataset, 0, RawStage("features__scaled", {}, StandardScaler(), ["passenger_count"], "a"), rows_id, memo)
    assert again.from_memo
    np.testing.assert_array_equal(again.output.train, first.output.train)


@pytest.mark.parametrize(("estimator", "columns", "message"), [
    (_ExplodingStage(), ["pickup_datetime"], "RuntimeError: boom in fit"),
    (Ridge(), ["no_such_column"], "KeyError: "),
], ids=["fit-raises", "missing-column"])
def test_run_stage_failure_is_a_result_not_an_exception(taxi: PreparedSearch, estimator: BaseEstimator, columns: list[str], message: str) -> None:
    """A stage that raises gives a StageResult carrying the error and its traceback."""
    stage = RawStage("features__time", {}, estimator, columns, "failing")
    result = run_stage(taxi.dataset, 0, stage, "rows-0", None)
    assert result.output is None and not result.from_memo
    assert result.error[0].startswith(message)
    assert result.error[1].startswith("Traceback (most recent call last)") and message.rstrip(": ") in result.error[1]


def test_prepare_equals_the_uncached_prefix(taxi: PreparedSearch) -> None:
    """The prefix assembled from precomputed stages gives what ``pipeline[:-1].fit_transform`` gives, on both sides."""
    widths = {}
    for group, fold in zip(taxi.plan.groups, (0, 2)):
        stages = _stages(taxi, group, fold)
        prepared = prepare(taxi.dataset, fold, taxi.pipeline, group.params, stages)
        X_train, y_train, X_test, y_test = taxi.dataset.fold(fold)
        uncached = clone(taxi.pipeline).set_params(**resolve(group.params, step_names(taxi.pipeline)))[:-1]
        assert prepared.error is None
        np.testing.assert_allclose(_dense(prepared.X_train), _dense(uncached.fit_transform(X_train, y_train)), rtol=0, atol=1e-12)
        np.testing.assert_allclose(_dense(prepared.X_test), _dense(uncached.transform(X_test)), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(prepared.y_train, y_train)
        np.testing.assert_array_equal(prepared.y_test, y_test)
        assert prepared.seconds >= sum(result.seconds for result in stages.values())
        widths[group.params["features__geohash__encode__precision"]] = prepared.X_train.shape[1]
    assert widths[4] < widths[5]  # each group's own stage parameters were used


def test_prepare_uses_the_precomputed_stages_as_they_are(taxi: PreparedSearch, taxi_stages: dict[str, StageResult],
                                                         taxi_fold0: Prepared) -> None:
    """The stages stand in for their steps: given another group's stage outputs, prepare does not refit them."""
    first, second = taxi.plan.groups
    assert first.params != second.params
    prepared = prepare(taxi.dataset, 0, taxi.pipeline, second.params, taxi_stages)
    np.testing.assert_array_equal(_dense(prepared.X_train), _dense(taxi_fold0.X_train))
    np.testing.assert_array_equal(_dense(prepared.X_test), _dense(taxi_fold0.X_test))


def test_failed_stage_makes_every_fit_of_the_group_an_error(taxi: PreparedSearch, taxi_stages: dict[str, StageResult]) -> None:
    """A failed stage gives Prepared.error; the group's fits are ERROR records with that error and traceback."""
    group = taxi.plan.groups[0]
    stages = dict(taxi_stages)
    stages["features__time"] = run_stage(taxi.dataset, 0, RawStage("features__time", {}, _ExplodingStage(), ["pickup_datetime"], "x"), "r", None)
    prepared = prepare(taxi.dataset, 0, taxi.pipeline, group.params, stages)
    assert prepared.error == stages["features__time"].error and prepared.X_train is None
    records = fit_batch(prepared, 0, group.families, FitSetup.of(taxi.pipeline, _stamp(taxi)))
    assert len(records) == group.n_candidates == 3
    for record in records:
        assert record.status is Status.ERROR and record.fold == 0
        assert (record.error, record.traceback) == prepared.error
        assert record.error == "RuntimeError: boom in fit" and "boom in fit" in record.traceback
        assert all(math.isnan(score) for score in record.scores.values())


def test_fit_batch_scores_a_ridge_group_as_separate_fits(taxi: PreparedSearch, taxi_fold0: Prepared) -> None:
    """Each candidate is fitted alone when it has no path: its scores are a plain fit's, on the prepared fold."""
    group, prepared = taxi.plan.groups[0], taxi_fold0
    records = fit_batch(prepared, 0, group.families, FitSetup.of(taxi.pipeline, _stamp(taxi)))
    assert [record.candidate_id for record in records] == [item.candidate_id for family in group.families for item in family.items]
    for record, family in zip(records, group.families):
        ridge = Ridge(alpha=family.items[0].params["model__alpha"]).fit(prepared.X_train, prepared.y_train)
        assert record.status is Status.OK and record.scores == _scores(ridge, prepared.X_test, prepared.y_test)
        assert record.fit_time > 0 and record.shared_fit is None and record.worker == "local"
        assert record.prep_time == prepared.seconds and record.started <= record.finished
        assert record.params == family.items[0].params_json and record.search_id == taxi.search_id


def test_fit_batch_scores_a_family_along_n_estimators_bit_identically(ensembles: PreparedSearch, ensembles_fold0: Prepared) -> None:
    """Forest and boosting families: the smaller ones score exactly as separate fits, with fit_time 0 and shared_fit the leader."""
    families = ensembles.plan.groups[0].families
    assert [(family.kind, [item.n_estimators for item in family.items]) for family in families] == [(kind, [10, 5, 3]) for kind in ENSEMBLES]
    records = fit_batch(ensembles_fold0, 0, families, FitSetup.of(ensembles.pipeline, _stamp(ensembles)))
    assert len(records) == 6
    by_id = {record.candidate_id: record for record in records}
    prepared = ensembles_fold0
    for family in families:
        leader = family.items[0]
        for item in family.items:
            record = by_id[item.candidate_id]
            alone = ENSEMBLES[family.kind](n_estimators=item.n_estimators, random_state=0).fit(prepared.X_train, prepared.y_train)
            assert record.status is Status.OK
            assert record.scores == _scores(alone, prepared.X_test, prepared.y_test)  # bit for bit
            if item is leader:
                assert record.fit_time > 0 and record.shared_fit is None
            else:
                assert record.fit_time == 0.0 and record.shared_fit == leader.candidate_id


def test_failing_final_estimator_errors_its_own_family_only(ensembles: PreparedSearch, ensembles_fold0: Prepared) -> None:
    """A family whose fit raises gives ERROR records for all its members; the families around it are OK."""
    forest, boosting = ensembles.plan.groups[0].families
    records = fit_batch(ensembles_fold0, 0, (forest, _failing_family("bad"), boosting), FitSetup.of(ensembles.pipeline, _stamp(ensembles)))
    statuses = {record.candidate_id: record.status for record in records}
    assert statuses == {**{item.candidate_id: Status.OK for item in forest.items + boosting.items}, "bad-0": Status.ERROR, "bad-1": Status.ERROR}
    for record in records:
        if record.status is Status.ERROR:
            assert record.error == "RuntimeError: boom in fit"
            assert "Traceback (most recent call last)" in record.traceback and "in fit" in record.traceback
            assert all(math.isnan(score) for score in record.scores.values())
            assert record.shared_fit is None and math.isnan(record.fit_time)
        else:
            assert record.error is None and record.traceback is None


def test_error_score_is_the_score_of_failed_records(ensembles: PreparedSearch, ensembles_fold0: Prepared) -> None:
    """With ``error_score=-1.0`` in the stamp failed records score -1.0 for every scorer; scored ones keep their scores."""
    forest = ensembles.plan.groups[0].families[0]
    records = fit_batch(ensembles_fold0, 0, (_failing_family("bad", 1), forest), FitSetup.of(ensembles.pipeline, _stamp(ensembles, -1.0)))
    assert records[0].status is Status.ERROR and records[0].scores == dict.fromkeys(SCORING, -1.0)
    assert all(record.status is Status.OK and -1.0 not in record.scores.values() for record in records[1:])
    failed_prep = Prepared(None, ensembles_fold0.y_train, None, ensembles_fold0.y_test, 0.0, ("ValueError: x", "trace"))
    assert all(record.scores == dict.fromkeys(SCORING, -1.0) for record in fit_batch(failed_prep, 0, (forest,), FitSetup.of(ensembles.pipeline, _stamp(ensembles, -1.0))))


def test_fit_warnings_go_into_the_record_not_to_the_terminal(taxi: PreparedSearch, taxi_fold0: Prepared,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Warnings raised in fit become the record's ``warnings``: one line each, deduplicated, after the prefix's own."""
    group, prepared = taxi.plan.groups[0], taxi_fold0
    noisy = FitFamily("noisy", (FitItem("noisy", {"model": _Noisy()}, '{"model": "noisy"}'),))
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        records = fit_batch(prepared, 0, (noisy, group.families[0]), FitSetup.of(taxi.pipeline, _stamp(taxi)))
        earlier = Prepared(prepared.X_train, prepared.y_train, prepared.X_test, prepared.y_test, 0.0, warnings="DataConversionWarning: earlier")
        (with_earlier,) = fit_batch(earlier, 0, (noisy,), FitSetup.of(taxi.pipeline, _stamp(taxi)))
    assert escaped == [] and capsys.readouterr().err == ""
    assert records[0].status is Status.OK
    assert records[0].warnings == "UserWarning: solver is tired\nConvergenceWarning: did not converge"
    assert records[1].warnings is None
    assert with_earlier.warnings == "DataConversionWarning: earlier\nUserWarning: solver is tired\nConvergenceWarning: did not converge"


@pytest.mark.parametrize("action", ["ignore", "error"])
def test_fit_warnings_are_recorded_whatever_the_process_filters(taxi: PreparedSearch, taxi_fold0: Prepared, action: str) -> None:
    """A worker whose warnings are ignored (or turned into errors) still fits, and records them."""
    noisy = FitFamily("noisy", (FitItem("noisy", {"model": _Noisy()}, '{"model": "noisy"}'),))
    with warnings.catch_warnings():
        warnings.simplefilter(action)
        (record,) = fit_batch(taxi_fold0, 0, (noisy,), FitSetup.of(taxi.pipeline, _stamp(taxi)))
    assert record.status is Status.OK
    assert record.warnings == "UserWarning: solver is tired\nConvergenceWarning: did not converge"


def test_a_warning_without_message_is_recorded_by_its_category(taxi: PreparedSearch, taxi_fold0: Prepared) -> None:
    """An empty warning message is no crash of the batch: the record names the category."""
    terse = FitFamily("terse", (FitItem("terse", {"model": _Terse()}, '{"model": "terse"}'),))
    (record,) = fit_batch(taxi_fold0, 0, (terse,), FitSetup.of(taxi.pipeline, _stamp(taxi)))
    assert record.status is Status.OK and record.warnings == "UserWarning"


def _numeric_dataset(rows: int = 90, folds: int = 3) -> Dataset:
    X, y = make_regression(n_samples=rows, n_features=4, noise=10.0, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    return Dataset(frame, y, tuple(KFold(folds, shuffle=True, random_state=0).split(frame)))


@pytest.mark.parametrize(("pipeline", "name"), [(Ridge(), "alpha"), (Pipeline([("model", Ridge())]), "model__alpha")], ids=["estimator", "one-step-pipeline"])
def test_fit_batch_without_a_prefix_reads_the_dataset(pipeline: BaseEstimator, name: str) -> None:
    """A pipeline that is its final estimator alone is fitted on the fold's raw rows."""
    dataset = _numeric_dataset()
    candidates = [Candidate(f"c{alpha}", {name: alpha}) for alpha in (0.1, 10.0)]
    plan = make_plan(candidates, pipeline, 3, scope="no-prefix")
    assert not plan.has_prefix and plan.n_prep_tasks == 0
    stamp = RecordStamp("s", "f", None, None, "0", SCORING)
    records = fit_batch(dataset, 2, plan.groups[0].families, FitSetup.of(pipeline, stamp))
    X_train, y_train, X_test, y_test = dataset.fold(2)
    assert [record.candidate_id for record in records] == ["c0.1", "c10.0"]
    for record, alpha in zip(records, (0.1, 10.0)):
        assert record.status is Status.OK and record.fold == 2 and record.prep_time == 0.0
        assert record.scores == _scores(Ridge(alpha=alpha).fit(X_train, y_train), X_test, y_test)


def test_fit_batch_without_a_prefix_shares_a_forest_fit() -> None:
    """Path fits work on raw rows too: a bare forest's smaller candidates score as separate fits."""
    dataset = _numeric_dataset()
    forest = RandomForestRegressor(random_state=0)
    plan = make_plan([Candidate(f"n{n}", {"n_estimators": n}) for n in (2, 6)], forest, 3, scope="bare-forest")
    (family,) = plan.groups[0].families
    records: list[FitRecord] = fit_batch(dataset, 0, (family,), FitSetup.of(forest, RecordStamp("s", "f", None, None, "0", SCORING)))
    X_train, y_train, X_test, y_test = dataset.fold(0)
    assert [(record.candidate_id, record.shared_fit) for record in records] == [("n6", None), ("n2", "n6")]
    for record, n in zip(records, (6, 2)):
        assert record.scores == _scores(RandomForestRegressor(n_estimators=n, random_state=0).fit(X_train, y_train), X_test, y_test)


_ONE_STEP = Pipeline([("model", Ridge())])
_NESTED = Pipeline([("model", Pipeline([("inner", Ridge())]))])


@pytest.mark.parametrize(("pipeline", "params"), [
    (_ONE_STEP, {"model__alpha": 3.0, "model__fit_intercept": False}),
    (_ONE_STEP, {"model": "sklearn.linear_model.Lasso", "model__alpha": 3.0}),
    (_NESTED, {"model__inner__alpha": 3.0}),
], ids=["step-params", "step-swapped", "nested-pipeline"])
def test_fit_batch_sets_a_whole_pipelines_params_as_its_set_params_does(pipeline: Pipeline, params: dict[str, Any]) -> None:
    """A pipeline fitted whole gets its candidate's params as ``Pipeline.set_params`` sets them."""
    dataset = _numeric_dataset()
    plan = make_plan([Candidate("c", params)], pipeline, 3, scope="set-params")
    (record,) = fit_batch(dataset, 0, plan.groups[0].families, FitSetup.of(pipeline, RecordStamp("s", "f", None, None, "0", SCORING)))
    X_train, y_train, X_test, y_test = dataset.fold(0)
    expected = clone(pipeline).set_params(**resolve(params, step_names(pipeline))).fit(X_train, y_train)
    assert record.status is Status.OK and record.scores == _scores(expected, X_test, y_test)


def test_fit_batch_refuses_an_unknown_step_param_as_pipeline_set_params_does() -> None:
    """An unknown parameter of a step is the candidate's error, with scikit-learn's own message."""
    plan = make_plan([Candidate("c", {"model__alfa": 3.0})], _ONE_STEP, 3, scope="set-params")
    (record,) = fit_batch(_numeric_dataset(), 0, plan.groups[0].families, FitSetup.of(_ONE_STEP, RecordStamp("s", "f", None, None, "0", SCORING)))
    with pytest.raises(ValueError, match="alfa") as raised:
        clone(_ONE_STEP).set_params(model__alfa=3.0)
    assert record.status is Status.ERROR and record.error == f"ValueError: {raised.value}"
