"""FastAPI dependencies: settings, database session, registry, engine, and the adapted model
a request may touch (ID + tenant, resolved once per request).

Dependencies that only read the application's state are ``async def``: FastAPI runs a plain
``def`` dependency in its thread pool, a thread hop per dependency per request (9% of the
service's GIL time under sequential adapt + predict, py-spy). Those that touch the database
stay ``def``: they block."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import StoreMismatch
from app.engine.engine import ServingEngine
from app.engine.registry import Registry
from app.jobs.runner import JobRunner


async def get_app_settings(request: Request) -> Settings:
    """The settings this application was built with."""
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


async def get_engine(request: Request) -> ServingEngine:
    return request.app.state.engine


async def get_jobs(request: Request) -> JobRunner | None:
    return getattr(request.app.state, "jobs", None)


async def require_store(request: Request) -> None:
    """Refuse /v1 work while the artifact store is not the one the database is bound to."""
    mismatch = getattr(request.app.state, "store_mismatch", None)
    if mismatch:
        raise StoreMismatch(mismatch)


async def get_registry(request: Request) -> Registry:
    return request.app.state.engine.registry


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
EngineDep = Annotated[ServingEngine, Depends(get_engine)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
JobsDep = Annotated[JobRunner | None, Depends(get_jobs)]
