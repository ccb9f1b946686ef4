# syntax=docker/dockerfile:1
# latentserve images, one file, three stages:
#   builder  wheels for latentserve and its base dependencies (the only stage with a compiler)
#   serve    the API: base install only (no torch, no compiler), non-root, `python -m service`
#   train    one-off training jobs: the `train` extra with CPU torch by default, `python -m training`
#
#   docker build --target serve -t latentserve .
#   docker build --target train -t latentserve-train .
#   docker build --target train --build-arg TORCH_SPEC=torch \
#       --build-arg TORCH_INDEX_URL=https://pypi.org/simple -t latentserve-train:gpu .   # CUDA torch
ARG PYTHON_VERSION=3.11

# ---- builder ---------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY service ./service
COPY training ./training
# every wheel the base install needs (prebuilt where PyPI has one, compiled here otherwise); the
# scoring core (core/, latentserve-core) first, so that latentserve's dependency on it is found here
RUN pip wheel --wheel-dir /wheels ./core \
    && pip wheel --wheel-dir /wheels --find-links /wheels .

# ---- serve -----------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS serve
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    LATENTSERVE_HOST=0.0.0.0 \
    LATENTSERVE_PORT=8000 \
    LATENTSERVE_MODELS_DIR=/models
RUN groupadd --system --gid 10001 latentserve \
    && useradd --system --uid 10001 --gid latentserve --create-home --shell /usr/sbin/nologin latentserve \
    && mkdir -p /models && chown latentserve:latentserve /models
# install from the builder's wheels only, without copying them into a layer; an empty mount (a layer
# cache that drops `--mount=type=bind,from=builder`, as buildah's --layers does) says so instead of
# pip's "not a valid wheel filename"
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    set -- /wheels/latentserve-*.whl \
    && { [ -f "$1" ] || { echo "no latentserve wheel in /wheels: the builder stage's wheels were not mounted" >&2; exit 1; }; } \
    && pip install --no-index --find-links /wheels "$1"
WORKDIR /home/latentserve
USER 10001:10001
EXPOSE 8000
# python, not curl: the slim image has no curl; the port follows LATENTSERVE_PORT
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('LATENTSERVE_PORT', '8000') + '/health/ready', timeout=2)"]
# mount the registry read-only at /models; every LATENTSERVE_* variable configures the service
ENTRYPOINT ["python", "-m", "service"]

# ---- train -----------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS train
# CPU torch by default; for CUDA torch: TORCH_SPEC=torch TORCH_INDEX_URL=https://pypi.org/simple
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MPLBACKEND=Agg
RUN groupadd --system --gid 10001 latentserve \
    && useradd --system --uid 10001 --gid latentserve --create-home --shell /usr/sbin/nologin latentserve \
    && mkdir -p /models && chown latentserve:latentserve /models \
    && ln -s /models /home/latentserve/models
RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    set -- /wheels/latentserve-*.whl \
    && { [ -f "$1" ] || { echo "no latentserve wheel in /wheels: the builder stage's wheels were not mounted" >&2; exit 1; }; } \
    && pip install --find-links /wheels "$1[train]"
# the default --models-dir `models` is the symlink to /models (mount the registry volume there)
WORKDIR /home/latentserve
USER 10001:10001
ENTRYPOINT ["python", "-m", "training"]
CMD ["bootstrap", "--models-dir", "/models"]
