# kafka-connect-probe: the sidecar as a container image.
#
#   docker build -t kafka-connect-probe:0.1.0 .
#
# Build stage: a venv at /opt/venv holding exactly the runtime dependencies pinned (with hashes)
# in uv.lock, plus the project itself installed as a regular (non-editable) wheel.
# Final stage: the same slim Python base plus that venv and nothing else: no compilers, no curl,
# no uv, no build backend, no source tree. Runs as a numeric non-root UID so Kubernetes can
# verify runAsNonRoot.
#
# PYTHON_IMAGE may be pinned to a digest (python:3.11-slim@sha256:...) for reproducible builds.
# `make image-test` builds this file unchanged with buildah against a local stand-in base.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build

# uv (from PyPI) only turns uv.lock into a hash-checked install; it stays in this stage.
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never
RUN python -m pip install --no-cache-dir "uv==${UV_VERSION}"

WORKDIR /src

# Dependencies first (own layer, rebuilt only when the lock changes).
COPY pyproject.toml uv.lock ./
RUN uv export --frozen --no-dev --no-emit-project --no-header --output-file /tmp/requirements.txt \
    && python -m venv --without-pip /opt/venv \
    && uv pip install --python /opt/venv/bin/python --require-hashes --no-deps \
        --requirement /tmp/requirements.txt

# Then the project, as a wheel (non-editable), without touching the pinned dependencies.
COPY README.md ./
COPY app/ ./app/
RUN uv pip install --python /opt/venv/bin/python --no-deps /src


FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="kafka-connect-probe" \
      org.opencontainers.image.description="Kubernetes readiness and liveness probes for Kafka Connect workers" \
      org.opencontainers.image.licenses="Apache-2.0"

# GLIBC_TUNABLES: buffers of 128 KiB and more are mmap'd, so a large Connect answer goes back to
# the system whole when freed (glibc would otherwise raise the threshold after the first one and
# keep later ones resident on the heap).
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072

# Root-owned and read-only for the runtime user; works with readOnlyRootFilesystem.
COPY --from=build /opt/venv /opt/venv

# Numeric UID:GID (no passwd entry needed) so the kubelet can check runAsNonRoot.
USER 10001:10001

# CONNECT_PROBE_PORT (default 18083): /ready, /live, /healthz, /status, /metrics.
EXPOSE 18083

# Exec form: connect-probe is PID 1 and receives SIGTERM itself (uvicorn shuts down gracefully).
ENTRYPOINT ["connect-probe"]
