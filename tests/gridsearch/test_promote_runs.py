"""promote as MLflow users expect it: a parent run per search, candidates as children, a log root, code tags.

One real search on the session's LocalCluster; every test promotes into its own SQLite
store (a refit of one or two candidates each), or fails before writing anything.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

import gridsearch
from gridsearch.cli import main
from gridsearch.errors import GridsearchError
from gridsearch.registry.promote import promote, summary
from kampai.registry import MODEL_VERSION_TAG, open_store

SCORING = ["neg_root_mean_squared_error", "r2"]
CONFIG = {
    "data": {"source": "synthetic-taxifare", "target": "fare_amount", "rows": 1200, "seed": 4},
    "pipeline": {"factory": "kampai.pipeline:taxifare_pipeline"},
    "search": {"params": {"features__geohash__encode__precision": [4, 5], "model__alpha": [0.1, 1.0, 10.0]}},
    "cv": {"folds": 3, "shuffle": True, "seed": 0},
    "scoring": SCORING,
}


@dataclass(frozen=True)
class Searched:
    root: Path
    result: gridsearch.SearchResult

    @property
    def log(self) -> Path:
        return self.result.log_path

    def best(self) -> pd.DataFrame:
        return self.result.cv_results.sort_values(["rank_test_neg_root_mean_squared_error", "candidate_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, cluster_address) -> Searched:
    root = tmp_path_factory.mktemp("hierarchy")
    config = {**copy.deepcopy(CONFIG), "cluster": {"address": cluster_address}, "log": str(root / "runs"), "cache": {"dir": None}}
    path = root / "search.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return Searched(root, gridsearch.run(path, progress=False))


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _runs(uri: str) -> list:
    store = open_store(uri)
    experiment = store.client.get_experiment_by_name("taxifare")
    return store.client.search_runs([experiment.experiment_id]) if experiment else []


def _ms(value) -> int:
    return int(pd.Timestamp(value).timestamp() * 1000)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args], cwd=repo, capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()


def _recode(log: Path, sha: str, dirty: bool) -> None:
    """Make a copied log say it was run by commit ``sha`` (``dirty``: with uncommitted changes), search.json and records alike."""
    meta = json.loads((log / "search.json").read_text())
    meta["code_version"] = {**meta["code_version"], "git_sha": sha, "git_dirty": dirty}
    (log / "search.json").write_text(json.dumps(meta))
    for part in log.glob("part-*.arrows"):
        with pa.OSFile(str(part)) as source:
            table = pa.ipc.open_stream(source).read_all()
        for name, value, kind in (("git_sha", sha, pa.string()), ("git_dirty", dirty, pa.bool_())):
            table = table.set_column(table.schema.get_field_index(name), name, pa.array([value] * len(table), kind))
        with pa.OSFile(str(part), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)


def test_a_search_is_one_parent_run_with_its_best_params_score_and_cv_results(searched, tmp_path):
    uri = _uri(tmp_path)
    promoted = promote(searched.log, top=2, tracking_uri=uri)
    best = searched.best().iloc[0]
    store = open_store(uri)
    parent = store.client.get_run(promoted.parent_run_id)
    params, metrics, tags = parent.data.params, parent.data.metrics, parent.data.tags
    assert parent.info.run_name == f"search-{searched.result.search_id[:8]}" and tags["gridsearch.search_id"] == searched.result.search_id
    for name, value in best["params"].items():  # as autolog names them
        assert params[f"best_{name}"] == str(value)
    assert metrics["best_cv_score"] == pytest.approx(best["mean_test_neg_root_mean_squared_error"], abs=1e-12)
    assert (metrics["n_candidates"], metrics["n_fits"], metrics["n_failed_fits"], metrics["n_lost_fits"]) == (6, 18, 0, 0)
    assert params["data__rows"] == "1200" and params["cv__folds"] == "3" and params["search_id"] == searched.result.search_id
    assert tags["gridsearch.best_candidate_id"] == best["candidate_id"] and "Grid search" in tags["mlflow.note.content"]
    assert sorted(a.path for a in store.client.list_artifacts(parent.info.run_id)) == ["cv_results.csv", "search.yaml"]
    table = pd.read_csv(store.client.download_artifacts(parent.info.run_id, "cv_results.csv", str(tmp_path)))
    expected = searched.result.cv_results.set_index("candidate_id")
    got = table.set_index("candidate_id").loc[expected.index]
    for scorer in SCORING:
        pd.testing.assert_series_equal(got[f"mean_test_{scorer}"], expected[f"mean_test_{scorer}"], rtol=0, atol=1e-12)
    assert [json.loads(p) for p in got["params"]] == list(expected["params"])

    # the promoted candidates are its children, with the times of their fits in the log, not of the promotion
    records = gridsearch.read_log(searched.log)
    assert (parent.info.start_time, parent.info.end_time) == (_ms(records["started"].min()), _ms(records["finished"].max()))
    for p in promoted:
        child = store.client.get_run(p.run_id)
        own = records[records["candidate_id"] == p.candidate_id]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id and p.parent_run_id == parent.info.run_id
        assert (child.info.start_time, child.info.end_time) == (_ms(own["started"].min()), _ms(own["finished"].max()))
        assert child.data.metrics["split2_test_r2"] == pytest.approx(own.sort_values("fold")["test_r2"].iloc[2], abs=1e-12)
        assert child.data.metrics["mean_fit_time"] > 0
    assert "parent run" in summary(promoted) and promoted.parent_run_id in summary(promoted)


def test_all_runs_logs_every_candidate_once_and_a_promotion_replaces_its_plain_child(searched, tmp_path):
    uri = _uri(tmp_path)
    first = promote(searched.log, top=1, all_runs=True, tracking_uri=uri)
    children = [r for r in _runs(uri) if r.data.tags.get("mlflow.parentRunId") == first.parent_run_id]
    assert first.children_logged == 5 and len(children) == 6
    assert sorted(r.data.tags["gridsearch.candidate_id"] for r in children) == sorted(searched.result.cv_results["candidate_id"])
    plain = [r for r in children if MODEL_VERSION_TAG not in r.data.tags]
    assert len(plain) == 5 and all(r.info.status == "FINISHED" and not r.outputs.model_outputs for r in plain)
    assert {"model__alpha", "features__geohash__encode__precision"} <= set(plain[0].data.params)
    assert {"mean_test_r2", "std_test_r2", "rank_test_r2", "split0_test_r2", "mean_fit_time"} <= set(plain[0].data.metrics)
    assert "5 more candidates logged as child runs" in summary(first)

    again = promote(searched.log, top=1, all_runs=True, tracking_uri=uri)
    assert again.children_logged == 0 and not again.parent_created and len(_runs(uri)) == 7
    second = searched.best()["candidate_id"].iloc[1]
    [promoted] = promote(searched.log, candidates=[second], tracking_uri=uri)
    children = [r for r in _runs(uri) if r.data.tags.get("mlflow.parentRunId") == first.parent_run_id]
    mine = [r for r in children if r.data.tags["gridsearch.candidate_id"] == second]
    assert len(children) == 6 and [r.info.run_id for r in mine] == [promoted.run_id]  # one child per candidate: the model's


def test_a_log_that_grew_gets_a_new_parent_which_keeps_the_children(searched, tmp_path):
    uri = _uri(tmp_path)
    log = tmp_path / "runs" / searched.log.name
    shutil.copytree(searched.log, log)
    [first] = promote(log, top=1, tracking_uri=uri)
    part = min(log.glob("part-*.arrows"))
    shutil.copyfile(part, part.with_name("part-zz-resumed.arrows"))  # as a resumed search appends: more records, same scores
    [again] = promote(log, top=1, tracking_uri=uri)
    assert not again.created and again.run_id == first.run_id and again.parent_run_id != first.parent_run_id
    store = open_store(uri)
    assert store.client.get_run(first.parent_run_id).info.lifecycle_stage == "deleted"
    assert store.client.get_run(first.run_id).data.tags["mlflow.parentRunId"] == again.parent_run_id
    assert store.client.get_run(again.parent_run_id).data.metrics["n_fits"] == len(gridsearch.read_log(log)) > 18


def test_promote_takes_a_log_root_holding_one_search_and_names_the_latest_of_several(searched, tmp_path, capfd):
    uri = _uri(tmp_path)
    root = tmp_path / "one"
    shutil.copytree(searched.log, root / searched.log.name)
    [done] = promote(root, top=1, tracking_uri=uri)  # as `top runs` ranks it
    assert done.candidate_id == searched.best()["candidate_id"].iloc[0]

    several = tmp_path / "several"
    for index, name in enumerate(["a1", "b2", "c3", "d4"]):
        shutil.copytree(searched.log, several / name)
        meta = json.loads((several / name / "search.json").read_text())
        (several / name / "search.json").write_text(json.dumps({**meta, "created": f"2026-01-0{[3, 1, 4, 2][index]}T00:00:00+00:00"}))
    before = hashlib.sha256((tmp_path / "mlflow.db").read_bytes()).hexdigest()
    latest = f"{several}/c3, {several}/a1, {several}/d4"
    with pytest.raises(GridsearchError, match=rf"^4 searches under {several}/: give one, e\.g\. {several}/c3 \(the latest: {latest};"):
        promote(several, top=1, tracking_uri=uri)
    capfd.readouterr()  # MLflow's own logs of the promotions above
    status = main(["promote", str(several), "--tracking-uri", uri])
    _, err = capfd.readouterr()
    assert status == 2 and err.count("\n") == 1 and err.startswith(f"error: 4 searches under {several}/"), err
    assert hashlib.sha256((tmp_path / "mlflow.db").read_bytes()).hexdigest() == before


def test_tag_code_labels_the_search_commit_and_records_the_tag(searched, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "code.py").write_text("A = 1\n")
    _git(repo, "add", "code.py")
    _git(repo, "commit", "-q", "-m", "the trained code")
    sha = _git(repo, "rev-parse", "HEAD")
    log = tmp_path / "runs" / searched.log.name
    shutil.copytree(searched.log, log)
    _recode(log, sha, dirty=False)
    uri = _uri(tmp_path)

    promoted = promote(log, top=1, tracking_uri=uri, allow_code_change=True, tag_code="taxifare-v3", code_repo=repo)
    assert _git(repo, "rev-parse", "taxifare-v3^{commit}") == sha and _git(repo, "cat-file", "-t", "taxifare-v3") == "tag"
    store = open_store(uri)
    for run_id in (promoted.parent_run_id, promoted[0].run_id):
        tags = store.client.get_run(run_id).data.tags
        assert tags["gridsearch.code_tag"] == "taxifare-v3" and tags["gridsearch.code_tag_commit"] == sha
    assert store.client.get_model_version("taxifare", promoted[0].version).tags["gridsearch.code_tag"] == "taxifare-v3"
    assert "git tag taxifare-v3 -> the search's commit" in summary(promoted)
    assert promote(log, top=1, tracking_uri=uri, tag_code="taxifare-v3", code_repo=repo).code_tag == "taxifare-v3"  # again: fine

    before = hashlib.sha256((tmp_path / "mlflow.db").read_bytes()).hexdigest()
    (repo / "code.py").write_text("A = 2\n")
    _git(repo, "commit", "-q", "-am", "later")
    _recode(log, _git(repo, "rev-parse", "HEAD"), dirty=False)
    with pytest.raises(GridsearchError, match=r"tag_code: git tag taxifare-v3 already names commit [0-9a-f]{12}, not "):
        promote(log, candidates=[searched.best()["candidate_id"].iloc[1]], tracking_uri=uri, allow_code_change=True,
                tag_code="taxifare-v3", code_repo=repo)
    _recode(log, sha, dirty=True)
    with pytest.raises(GridsearchError, match=rf"tag_dirty: not given, and search {searched.result.search_id} ran on uncommitted "
                                              rf"changes: commit {sha[:12]} does not hold the code that scored it"):
        promote(log, candidates=[searched.best()["candidate_id"].iloc[1]], tracking_uri=uri, allow_code_change=True,
                tag_code="taxifare-v4", code_repo=repo)
    assert hashlib.sha256((tmp_path / "mlflow.db").read_bytes()).hexdigest() == before
    assert _git(repo, "tag", "--list") == "taxifare-v3"
