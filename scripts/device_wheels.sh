#!/usr/bin/env bash
# Fetch, into .whl/ (git-ignored), the Python 3.12 wheels of the service's packages that a lent
# GPU machine's Python lacks (it has PyTorch, numpy, pillow, httpx, pytest, matplotlib...), for
# scripts/device_gpu_benchmarks.sh. Versions: the ones this project's venv resolved.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
mkdir -p .whl
for pkg in alembic annotated-types fastapi fastapi-offline httptools importlib-metadata mako \
    opentelemetry-api opentelemetry-sdk opentelemetry-semantic-conventions pydantic pydantic-core \
    pydantic-settings python-dotenv sqlalchemy starlette typing-inspection uvicorn; do
  version="$("$PY" -m pip show "$pkg" 2>/dev/null | sed -n 's/^Version: //p' || true)"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl "$pkg${version:+==$version}"
done
ls .whl
