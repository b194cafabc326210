"""kampai.provenance: the running code's version, and labelling a commit in a real (temporary) git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kampai.errors import KampaiError
from kampai.provenance import CodeVersion, check_tag, code_version, delete_tag, tag_commit


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args], cwd=repo,
                          capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository with two commits; returns it and both shas (oldest first)."""
    _git(tmp_path, "init", "-q")
    shas = []
    for text in ("one", "two"):
        (tmp_path / "code.py").write_text(f"VERSION = {text!r}\n")
        _git(tmp_path, "add", "code.py")
        _git(tmp_path, "commit", "-q", "-m", text)
        shas.append(_git(tmp_path, "rev-parse", "HEAD"))
    return tmp_path, shas[0], shas[1]


def test_code_version_names_the_package_and_the_commit():
    version = code_version()
    assert isinstance(version, CodeVersion) and version.package_version != ""
    assert str(version).startswith("kampai-gridsearch ")
    assert str(CodeVersion("a" * 40, True, "0.1.0")) == "kampai-gridsearch 0.1.0 (aaaaaaaaaaaa-dirty)"


def test_tag_commit_labels_an_older_commit_once(repo):
    path, first, second = repo
    assert check_tag("taxifare-v1", first, path) is False
    assert tag_commit("taxifare-v1", first, "search 3f2a promoted", path) is True
    assert _git(path, "rev-parse", "taxifare-v1^{commit}") == first
    assert _git(path, "cat-file", "-t", "taxifare-v1") == "tag"  # annotated, with its message
    assert "search 3f2a promoted" in _git(path, "tag", "-n1", "taxifare-v1")
    assert tag_commit("taxifare-v1", first, "again", path) is False  # already there: nothing to do
    assert _git(path, "rev-parse", "HEAD") == second  # the checkout itself is untouched
    delete_tag("taxifare-v1", path)
    assert _git(path, "tag", "--list") == ""


@pytest.mark.parametrize(
    ("name", "sha", "message"),
    [
        ("taxifare-v1", "second", r"git tag taxifare-v1 already names commit [0-9a-f]{12}, not [0-9a-f]{12} \(choose another name\)"),
        ("bad..name", "first", r"'bad\.\.name' is not a valid git tag name"),
        ("taxifare-v2", "f" * 40, r"commit ffffffffffff is not in the git repository at "),
    ],
)
def test_tag_commit_refuses_what_it_cannot_tag(repo, name, sha, message):
    path, first, second = repo
    tag_commit("taxifare-v1", first, "first", path)
    with pytest.raises(KampaiError, match=message):
        tag_commit(name, {"first": first, "second": second}.get(sha, sha), "m", path)
    assert _git(path, "tag", "--list") == "taxifare-v1"


def test_tag_commit_outside_a_repository_says_so(tmp_path):
    with pytest.raises(KampaiError, match="is not in a git repository; cannot tag commit"):
        check_tag("v1", "a" * 40, tmp_path)
