# Metaserve container: CPU PyTorch, non-root, migrations before serving.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    METASERVE_HOST=0.0.0.0 \
    METASERVE_PORT=8000 \
    METASERVE_DATA_DIR=/data \
    METASERVE_MODELS_DIR=/app/models

WORKDIR /app
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY alembic ./alembic
COPY models ./models
RUN pip install . \
    && useradd --create-home --uid 10001 metaserve \
    && mkdir -p /data \
    && chown metaserve /data

USER 10001
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['METASERVE_PORT']}/readyz\", timeout=2)"]
CMD ["sh", "-c", "metaserve db upgrade && exec metaserve serve"]
