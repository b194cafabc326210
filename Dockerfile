# One image for the local cluster of docker-compose.yml: the Dask scheduler, its workers and
# the MLflow tracking server. The project is installed exactly as the README's `make run` and
# `make test` install it, by the Makefile's own install target (a venv, then uv installs
# requirements.lock and the project), so workers have `kampai` and the client's versions
# (tests/test_compose.py checks it). Build it for the client's Python:
#   PYTHON_VERSION=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') docker compose build
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# make runs the install below; a newer make than Debian's current one changes nothing here.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY Makefile pyproject.toml requirements.lock README.md ./
COPY kampai/ kampai/
COPY gridsearch/ gridsearch/
COPY conf/ conf/
RUN make install VENV=/opt/venv

# The venv first on PATH: `python`, `dask` and `mlflow` are the project's. HOME is writable for
# any user id (the workers run as the host user, see docker-compose.yml).
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# /mlflow holds the tracking server's SQLite database and artifacts (a named volume).
RUN useradd --uid 1000 --no-create-home kampai \
    && mkdir /mlflow \
    && chown kampai /mlflow
USER 1000
CMD ["dask", "scheduler"]
