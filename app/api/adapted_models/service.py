"""Adapted models: create (adapt + persist), read, list, delete, predict."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.api.adapted_models.schemas import (
    AdaptedModelCreate,
    ClassPrediction,
    PredictionResponse,
)
from app.api.meta_learners.service import get_registered
from app.core.config import Settings
from app.core.problems import (
    AdaptedModelNotFound,
    IdempotencyConflict,
    InvalidOptions,
    LimitExceeded,
    QuotaExceeded,
)
from app.db.models import AdaptedModelRow, IdempotencyRow
from app.engine.engine import ServingEngine
from app.engine.inputs import to_tensor
from app.engine.support import encode_targets, resolve_steps


def now_utc() -> datetime:
    return datetime.now(UTC)


log = logging.getLogger("metaserve.adapted_models")


def request_digest(adapted_model_in: AdaptedModelCreate) -> str:
    canonical = json.dumps(adapted_model_in.model_dump(mode="json"), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def replay(*, session: Session, tenant: str, key: str, digest: str) -> AdaptedModelRow | None:
    """The adapted model an earlier request with this Idempotency-Key created, if any."""
    previous = session.get(IdempotencyRow, (tenant, key))
    if previous is None:
        return None
    if previous.request_sha256 != digest:
        raise IdempotencyConflict(f"Idempotency-Key {key!r} was used with a different request body")
    return get(session=session, adapted_model_id=previous.adapted_model_id, tenant=tenant)


def create(*, session: Session, engine: ServingEngine, settings: Settings,
           adapted_model_in: AdaptedModelCreate, tenant: str = "default",
           idempotency_key: str | None = None) -> tuple[AdaptedModelRow, bool]:
    """Adapt a meta-learner to a support set, store the state durably, then commit the row.

    Returns (row, replayed): with an ``Idempotency-Key`` seen before and the same body, the
    earlier adapted model is returned and nothing new is created.
    """
    digest = request_digest(adapted_model_in)
    if idempotency_key:
        earlier = replay(session=session, tenant=tenant, key=idempotency_key, digest=digest)
        if earlier is not None:
            return earlier, True
    count = session.scalar(select(func.count()).where(AdaptedModelRow.tenant == tenant))
    if count >= settings.max_models_per_tenant:
        raise QuotaExceeded(f"tenant holds {count} adapted models, the maximum is "
                            f"{settings.max_models_per_tenant}; delete some first")
    reg = get_registered(engine.registry, adapted_model_in.meta_learner)
    support = adapted_model_in.support
    options = adapted_model_in.options
    ttl = options.ttl_seconds or settings.default_ttl_seconds
    if ttl > settings.max_ttl_seconds:
        raise InvalidOptions(f"options.ttl_seconds={ttl} exceeds the maximum of "
                             f"{settings.max_ttl_seconds}")
    steps = resolve_steps(reg, options.steps)
    encoded = encode_targets(reg, support.targets, len(support.inputs))
    x = to_tensor(support.inputs, reg.input_spec, "support.inputs",
                  settings.max_image_bytes, settings.max_image_pixels)
    result = engine.adapt(reg, x, encoded.y, encoded.ways, steps)
    sha = engine.store.put(result.artifact)  # durable before the row exists
    created = now_utc()
    row = AdaptedModelRow(
        id=uuid.uuid4().hex, tenant=tenant, meta_learner=reg.name,
        meta_learner_version=reg.version, task_type=reg.task_type, labels=encoded.labels,
        artifact_sha256=sha, artifact_bytes=len(result.artifact), adaptation=result.report,
        created_at=created, expires_at=created + timedelta(seconds=ttl),
    )
    session.add(row)
    if idempotency_key:
        session.add(IdempotencyRow(tenant=tenant, key=idempotency_key, request_sha256=digest,
                                   adapted_model_id=row.id, created_at=created))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        release_artifact(session=session, engine=engine, sha256=sha)
        if idempotency_key:  # a concurrent request with the same key won the race
            earlier = replay(session=session, tenant=tenant, key=idempotency_key, digest=digest)
            if earlier is not None:
                return earlier, True
        raise
    except Exception:
        session.rollback()
        release_artifact(session=session, engine=engine, sha256=sha)
        raise
    engine.remember(sha, result.state)
    return row, False


def get(*, session: Session, adapted_model_id: str, tenant: str = "default") -> AdaptedModelRow:
    """The adapted model, unless it does not exist, belongs to another tenant or has expired."""
    row = session.get(AdaptedModelRow, adapted_model_id)
    if row is None or row.tenant != tenant or row.expires_at <= now_utc():
        raise AdaptedModelNotFound(f"no adapted model with id {adapted_model_id!r}")
    return row


def encode_cursor(row: AdaptedModelRow) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, _, ident = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), ident
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidOptions("cursor is not a cursor returned by this API") from exc


def list_page(*, session: Session, limit: int, cursor: str | None, meta_learner: str | None,
              tenant: str = "default") -> tuple[list[AdaptedModelRow], str | None]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(AdaptedModelRow).where(
        AdaptedModelRow.tenant == tenant, AdaptedModelRow.expires_at > now_utc())
    if meta_learner:
        query = query.where(AdaptedModelRow.meta_learner == meta_learner)
    if cursor:
        created, ident = decode_cursor(cursor)
        query = query.where(
            (AdaptedModelRow.created_at < created)
            | ((AdaptedModelRow.created_at == created) & (AdaptedModelRow.id < ident)))
    rows = list(session.scalars(
        query.order_by(AdaptedModelRow.created_at.desc(), AdaptedModelRow.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]) if more and rows else None


def release_artifact(*, session: Session, engine: ServingEngine, sha256: str) -> None:
    """Delete an artifact once no row references it (artifacts are shared by content).

    An artifact written or re-put within the grace period is kept, because another request
    (in this or another process) may be about to commit a row for the same content; the
    periodic sweep collects it once it is older.
    """
    in_use = session.scalar(select(func.count()).where(AdaptedModelRow.artifact_sha256 == sha256))
    if in_use:
        return
    engine.cache.discard(sha256)
    if engine.store.exists(sha256) and engine.store.age_seconds(sha256) >= engine.artifact_grace_seconds:
        engine.store.delete(sha256)


def delete(*, session: Session, engine: ServingEngine, adapted_model_id: str,
           tenant: str = "default") -> None:
    row = get(session=session, adapted_model_id=adapted_model_id, tenant=tenant)
    sha = row.artifact_sha256
    session.delete(row)
    session.execute(sql_delete(IdempotencyRow).where(IdempotencyRow.adapted_model_id == row.id))
    session.commit()
    release_artifact(session=session, engine=engine, sha256=sha)


def sweep_expired(*, session: Session, engine: ServingEngine, batch: int = 500) -> int:
    """Delete expired adapted models, their idempotency keys and unshared artifacts."""
    removed = 0
    while True:
        rows = list(session.scalars(select(AdaptedModelRow).where(
            AdaptedModelRow.expires_at <= now_utc()).limit(batch)))
        if not rows:
            return removed
        ids = [r.id for r in rows]
        shas = {r.artifact_sha256 for r in rows}
        session.execute(sql_delete(IdempotencyRow).where(IdempotencyRow.adapted_model_id.in_(ids)))
        session.execute(sql_delete(AdaptedModelRow).where(AdaptedModelRow.id.in_(ids)))
        session.commit()
        for sha in shas:
            release_artifact(session=session, engine=engine, sha256=sha)
        removed += len(ids)
        log.info("expired adapted models removed", extra={"count": len(ids)})


def predict(*, session: Session, engine: ServingEngine, settings: Settings,
            adapted_model_id: str, inputs: list[Any], tenant: str = "default") -> PredictionResponse:
    row = get(session=session, adapted_model_id=adapted_model_id, tenant=tenant)
    reg = get_registered(engine.registry, row.meta_learner)
    if len(inputs) > reg.limits["max_queries"]:
        raise LimitExceeded(f"{len(inputs)} inputs exceed the limit of "
                            f"{reg.limits['max_queries']} per request for {reg.name}")
    x = to_tensor(inputs, reg.input_spec, "inputs", settings.max_image_bytes,
                  settings.max_image_pixels)
    state = engine.load_state(row.artifact_sha256)
    out = engine.predict(reg, state, x)
    if reg.task_type == "regression":
        return PredictionResponse(predictions=[float(v) for v in out.reshape(-1)])
    labels = row.labels or []
    names = [str(label) for label in labels]
    preds = [
        ClassPrediction(label=labels[int(p.argmax())],
                        probabilities={n: float(v) for n, v in zip(names, p.tolist())})
        for p in out
    ]
    return PredictionResponse(predictions=preds)
