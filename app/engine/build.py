"""Build the serving engine from settings: registry, worker pools, artifact store, cache.
Shared by the HTTP service (``app.main``) and the job worker (``app.jobs.worker``)."""

from __future__ import annotations

import gc

import torch
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.metrics import Metrics
from app.engine.admission import TenantAdmission
from app.engine.allocator import keep_freed_memory
from app.engine.cache import StateCache
from app.engine.engine import ServingEngine
from app.engine.executor import Executor
from app.engine.registry import load_registry
from app.engine.types import BatchingPolicy
from app.meta.codecs import InputLimits
from app.storage import make_store


class DeviceUnavailable(RuntimeError):
    """METASERVE_DEVICE names a device this machine does not have."""


def resolve_device(name: str) -> torch.device:
    """``cpu`` or an available ``cuda[:N]``; never a silent fallback to the CPU."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"METASERVE_DEVICE={name}, but PyTorch sees no CUDA device "
                                    f"here (torch {torch.__version__}); unset it to run on the CPU")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"METASERVE_DEVICE={name}, but this machine has "
                                    f"{torch.cuda.device_count()} CUDA device(s)")
        device = torch.device("cuda", index)
    return device


def build_engine(settings: Settings, metrics: Metrics,
                 factory: sessionmaker[Session] | None = None) -> ServingEngine:
    device = resolve_device(settings.device)
    keep_freed_memory(settings.malloc_trim_threshold_bytes)  # process-wide, before the first tensors
    if factory is not None:  # the catalog in the database, seeded from the models folder
        from app.catalog.watcher import initial_registry

        registry = initial_registry(settings, factory, device)
    else:
        registry = load_registry(settings.models_dir, device)
    executor = Executor(settings.workers, settings.max_queue, settings.resolved_torch_threads)
    predict_executor = Executor(settings.prediction_workers, settings.max_queue,
                                settings.resolved_torch_threads, name="metaserve-predict")
    return ServingEngine(
        registry, make_store(settings, factory), StateCache(settings.cache_bytes), executor, metrics,
        BatchingPolicy(settings.batching, settings.max_batch, settings.max_wait_ms),
        artifact_grace_seconds=settings.orphan_grace_seconds,
        input_limits=InputLimits(settings.max_image_bytes, settings.max_image_pixels,
                                 settings.embedding_cache_bytes, str(device)),
        predict_executor=predict_executor,
        admission=TenantAdmission(settings.max_adaptations_per_tenant),
        max_response_bytes=settings.max_response_bytes, device=device)


def freeze_loaded_objects() -> None:
    """Exclude what start-up loaded (learners, the sentence encoder, modules: about half a
    million objects) from the cyclic garbage collector. Every full collection walked them all:
    a 0.35 s pause of every request, twice in 15 s under a 32-client load; with them frozen a
    full collection took 13 ms. Call once the engine is built and warmed up;
    ``shutdown_engine`` unfreezes them (a process that builds several engines, as the tests
    do, lets each one's objects be collected after it). No collection first: it would cost
    the same 0.35 s at every start, for the little cyclic garbage start-up leaves."""
    gc.freeze()


def shutdown_engine(engine: ServingEngine) -> None:
    gc.unfreeze()
    engine.executor.shutdown()
    if engine.predict_executor is not engine.executor:
        engine.predict_executor.shutdown()
