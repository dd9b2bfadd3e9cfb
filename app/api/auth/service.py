"""API keys: ``ms_<id>_<secret>``; the secret is shown once and stored as its sha256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.api.auth.verified_keys import VerifiedKeys
from app.db.models import ApiKeyRow

PREFIX = "ms"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


SCOPES = ("tenant", "admin")


def create_key(*, session: Session, tenant: str, scope: str = "tenant") -> tuple[str, str]:
    """A new key for ``tenant`` (``scope`` admin: it may also operate the catalog); returns
    (key id, full key). The full key is not stored."""
    if not tenant or len(tenant) > 100:
        raise ValueError("tenant must be 1-100 characters")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}")
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    session.add(ApiKeyRow(id=key_id, tenant=tenant, secret_sha256=_digest(secret),
                          created_at=datetime.now(UTC), scope=scope))
    session.commit()
    return key_id, f"{PREFIX}_{key_id}_{secret}"


def revoke_key(*, session: Session, key_id: str) -> bool:
    row = session.get(ApiKeyRow, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = datetime.now(UTC)
    session.commit()
    return True


def list_keys(*, session: Session) -> list[ApiKeyRow]:
    return list(session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at)))


KEY_BY_ID = select(ApiKeyRow.id, ApiKeyRow.tenant, ApiKeyRow.secret_sha256, ApiKeyRow.revoked_at,
                   ApiKeyRow.scope).where(ApiKeyRow.id == bindparam("key_id"))


def authenticate(*, session: Session, key: str, verified: VerifiedKeys | None = None) -> tuple[str, str] | None:
    """(key id, tenant) for a valid, unrevoked key; None otherwise. With ``verified``, a key
    it trusts is not looked up again (see :mod:`app.api.auth.verified_keys`)."""
    found = authenticate_with_scope(session=session, key=key, verified=verified)
    return None if found is None else found[:2]


def authenticate_with_scope(*, session: Session, key: str,
                            verified: VerifiedKeys | None = None) -> tuple[str, str, str] | None:
    """(key id, tenant, scope) for a valid, unrevoked key; None otherwise."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    key_id, digest = parts[1], _digest(parts[2])
    if verified is not None and (known := verified.trusted(key_id, digest)) is not None:
        return key_id, known.tenant, known.scope
    row = session.execute(KEY_BY_ID, {"key_id": key_id}).one_or_none()  # Core: no ORM load
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_sha256, digest):
        return None
    if verified is not None:
        verified.remember(row.id, row.secret_sha256, row.tenant, row.scope)
    return row.id, row.tenant, row.scope
