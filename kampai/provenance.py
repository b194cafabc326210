"""Which code produced a result: git commit, uncommitted changes, package version."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

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


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=_SOURCE_ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _package_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
