"""Which code produced a result: git commit, uncommitted changes, package version; and labelling a commit.

``tag_commit`` is how "label the trained code" is done: an annotated git tag on the commit
a search ran (``git checkout <tag>`` gets that code back, e.g. to predict with it).
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from kampai.errors import KampaiError

DISTRIBUTION = "kampai-gridsearch"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent
_CODE_PATHS = ("kampai", "gridsearch", "pyproject.toml")


@dataclass(frozen=True)
class CodeVersion:
    """``git_sha`` and ``git_dirty`` are None outside a git checkout."""

    git_sha: str | None
    git_dirty: bool | None
    package_version: str

    def as_dict(self) -> dict[str, str | bool | None]:
        return asdict(self)

    def __str__(self) -> str:
        commit = "no git" if self.git_sha is None else self.git_sha[:12] + ("-dirty" if self.git_dirty else "")
        return f"{DISTRIBUTION} {self.package_version} ({commit})"


@cache
def code_version() -> CodeVersion:
    """The running code's version; dirty means uncommitted changes to the packages' code."""
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--", *_CODE_PATHS) if sha else None
    return CodeVersion(git_sha=sha, git_dirty=None if sha is None else bool(status), package_version=_package_version())


def source_hash() -> str:
    """Hash of the installed ``kampai`` and ``gridsearch`` source files as they are on disk now:
    equal means the same code (read at each call: ~30 small files)."""
    digest = hashlib.sha256()
    for package in _CODE_PATHS[:2]:
        for path in sorted((_SOURCE_ROOT / package).rglob("*.py")):
            digest.update(path.relative_to(_SOURCE_ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def check_tag(name: str, sha: str, repo: str | Path | None = None) -> bool:
    """Whether :func:`tag_commit` can tag ``sha`` as ``name``: True if the tag already names it, False if it is free.

    Raises
    ------
    KampaiError
        An invalid tag name, no git repository, a commit the repository lacks, or a tag of
        that name on another commit.
    """
    where = Path(repo) if repo is not None else _SOURCE_ROOT
    if _git("rev-parse", "--git-dir", cwd=where) is None:
        raise KampaiError(f"{where} is not in a git repository; cannot tag commit {sha[:12]}")
    if _git("check-ref-format", f"refs/tags/{name}", cwd=where) is None:
        raise KampaiError(f"{name!r} is not a valid git tag name (see 'git check-ref-format')")
    if _git("cat-file", "-e", f"{sha}^{{commit}}", cwd=where) is None:
        raise KampaiError(f"commit {sha[:12]} is not in the git repository at {where} (fetch it, or tag it where it is)")
    existing = _git("rev-parse", "--verify", "--quiet", f"refs/tags/{name}^{{commit}}", cwd=where)
    if existing and existing != sha:
        raise KampaiError(f"git tag {name} already names commit {existing[:12]}, not {sha[:12]} (choose another name)")
    return bool(existing)


def tag_commit(name: str, sha: str, message: str, repo: str | Path | None = None) -> bool:
    """Tag commit ``sha`` as ``name`` (an annotated tag) in the git repository ``repo`` (default: this code's checkout).

    Returns True when the tag was created, False when it already named that commit.

    Raises
    ------
    KampaiError
        As :func:`check_tag`, or when git cannot write the tag.
    """
    where = Path(repo) if repo is not None else _SOURCE_ROOT
    if check_tag(name, sha, where):
        return False
    identity = [] if _git("config", "user.email", cwd=where) else ["-c", "user.name=gridsearch promote", "-c", "user.email=gridsearch@localhost"]
    if _git(*identity, "tag", "-a", name, sha, "-m", message, cwd=where) is None:
        raise KampaiError(f"git could not create tag {name} on {sha[:12]} in {where}")
    return True


def delete_tag(name: str, repo: str | Path | None = None) -> None:
    """Delete git tag ``name`` (undoing :func:`tag_commit` when what it labels could not be recorded)."""
    _git("tag", "-d", name, cwd=Path(repo) if repo is not None else _SOURCE_ROOT)


def _git(*args: str, cwd: Path = _SOURCE_ROOT) -> str | None:
    """Output of a git command, None when git fails or is missing."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _package_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
