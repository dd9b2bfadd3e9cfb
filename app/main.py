"""Application factory: ``uvicorn app.main:create_app --factory``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from app import __version__
from app.api import health
from app.api.adapted_models.router import router as adapted_models_router
from app.api.admin.router import router as admin_router
from app.api.auth.dependencies import AUTHENTICATED
from app.api.auth.rate_limit import make_rate_limiter
from app.api.auth.verified_keys import VerifiedKeys
from app.api.meta_learners.router import router as meta_learners_router
from app.api.meta_learners.service import mirror_registry
from app.api.openapi import problem_openapi, serve_local_docs
from app.catalog.watcher import CatalogWatcher
from app.console import mount_console
from app.core.call_placement import CallPlacement
from app.core.config import Settings, get_settings
from app.core.logging import configure_logging
from app.core.metrics import Metrics
from app.core.middleware import RequestContextMiddleware
from app.core.problems import install_problem_handlers
from app.core.tracing import configure_tracing
from app.db.migrate import check_schema
from app.db.session import make_engine, make_session_factory
from app.engine.build import build_engine, freeze_loaded_objects, shutdown_engine
from app.jobs.runner import InProcessRunner
from app.lifecycle import ExpirySweeper, bind_store, collect_orphans

log = logging.getLogger("metaserve")


def request_threads(settings: Settings) -> int:
    """Threads for sync request handling: both work queues full, plus room for reads."""
    return 2 * settings.max_queue + 16


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; start-up loads the registry and mirrors it into the database."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # request threads (sync routes and dependencies) must outnumber the work queues, so
        # that the queues are the real bound (503 + Retry-After) rather than a silent wait
        anyio.to_thread.current_default_thread_limiter().total_tokens = request_threads(settings)
        db = make_engine(settings.resolved_database_url, settings.db_pool_size,
                         settings.db_max_overflow, settings.db_pool_timeout)
        check_schema(db)  # a database behind this code's migrations is refused, loudly
        app.state.session_factory = make_session_factory(db)
        app.state.engine = engine = build_engine(settings, metrics, app.state.session_factory)
        registry = engine.registry
        with app.state.session_factory() as session:
            mirror_registry(session=session, registry=registry)
            app.state.store_mismatch = bind_store(session=session, states=engine.states)
            if app.state.store_mismatch is None:
                collect_orphans(session=session, states=engine.states)
        if settings.warm_up and app.state.store_mismatch is None:
            engine.warm_up()
        freeze_loaded_objects()
        sweeper = ExpirySweeper(app.state.session_factory, engine.states, settings.sweep_interval_seconds)
        app.state.jobs = jobs = InProcessRunner(
            app.state.session_factory, engine, threads=settings.job_threads,
            lease_seconds=settings.job_lease_seconds, poll_seconds=settings.job_poll_seconds,
            max_attempts=settings.job_max_attempts,
            torch_threads=settings.resolved_job_torch_threads(only_jobs=False))
        app.state.catalog = catalog = CatalogWatcher(
            app.state.session_factory, engine, settings, metrics,
            mirror=lambda session, new: mirror_registry(session=session, registry=new))
        catalog.start()
        if app.state.store_mismatch is None:
            sweeper.start()
            jobs.start()
        if not settings.auth_enabled:
            log.warning("authentication is OFF (METASERVE_AUTH_ENABLED=false): every client "
                        "acts as tenant 'default'; use this for local development only")
        log.info("ready", extra={"meta_learners": [r.ref for r in registry.all()],
                                 "refused": registry.refused, "batched": engine.batched})
        yield
        catalog.stop()
        jobs.stop()
        sweeper.stop()
        shutdown_engine(engine)
        db.dispose()

    app = FastAPI(
        title="Metaserve",
        version=__version__,
        description="Adapt pretrained meta-learners to few-shot tasks over HTTP, then predict.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.openapi = lambda: problem_openapi(app)
    app.state.metrics = metrics
    app.state.rate_limiter = make_rate_limiter(settings.rate_limit_per_minute,
                                               settings.rate_limit_storage, "keys")
    app.state.verified_keys = VerifiedKeys(settings.auth_cache_seconds)
    app.state.auth_failure_limiter = make_rate_limiter(settings.auth_failures_per_minute,
                                                       settings.rate_limit_storage, "auth-failures",
                                                       burst=10)
    # the app's own settings (not a dependency override: any override makes FastAPI rebuild
    # every dependency's signature on every request, ~7% of a request's CPU)
    app.state.settings = settings
    app.state.call_placement = placement = CallPlacement(settings.inline_call_max_ms / 1000.0)
    install_problem_handlers(app)
    configure_tracing(settings.otel_enabled)
    # authenticated by default; the public list: health, readiness, metrics and the API docs
    app.include_router(meta_learners_router, dependencies=AUTHENTICATED)
    app.include_router(adapted_models_router, dependencies=AUTHENTICATED)
    app.include_router(health.router)
    if settings.admin_api_enabled:  # off: the routes do not exist (404)
        app.include_router(admin_router)
    serve_local_docs(app)
    if settings.console_enabled:
        mount_console(app)
    app.state.route_methods = [
        (route.path_regex, route.methods)
        for router in (meta_learners_router, adapted_models_router,
                       health.router, *([admin_router] if settings.admin_api_enabled else []))
        for route in router.routes]
    app.add_middleware(RequestContextMiddleware, metrics=metrics,
                       max_body_bytes=settings.max_body_bytes,
                       body_timeout_seconds=settings.body_timeout_seconds,
                       max_requests_per_client=settings.max_requests_per_client,
                       placement=placement)
    return app
