"""Operations on the catalog, each one transaction with its audit event: seed (from the models
folder), publish, alias, retire, purge; and the revision replicas poll, and the history.

Every change appends a ``registry_events`` row in the same transaction, so the largest event id
is the catalog's revision: a replica that sees it move reloads (``app.catalog.watcher``).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.catalog.validation import CheckedVersion
from app.db.models import (
    AdaptedModelRow,
    RegistryAliasRow,
    RegistryCanaryRow,
    RegistryEventRow,
    RegistryVersionRow,
)
from app.db.session import lock_named
from app.engine.registry import candidate_folders
from app.meta.checkpoint import MANIFEST, WEIGHTS, file_sha256
from app.storage.artifacts import ArtifactStore

log = logging.getLogger("metaserve.catalog")
ALIAS = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
LOCK = "metaserve:registry-catalog"
CHANNEL = "metaserve_catalog"  # PostgreSQL NOTIFY channel: the catalog moved (sent at commit)


class CatalogError(Exception):
    """An operation the catalog's state does not allow; the message says why."""


class NotInCatalog(CatalogError):
    pass


class VersionConflict(CatalogError):
    """``name@version`` is already published with other bytes (versions are immutable)."""


def revision(session: Session) -> int:
    return int(session.scalar(select(func.max(RegistryEventRow.id))) or 0)


def record(session: Session, *, actor: str, action: str, name: str, version: str | None,
           detail: dict[str, Any]) -> None:
    session.add(RegistryEventRow(at=datetime.now(UTC), actor=actor[:100], action=action, name=name,
                                 version=version, detail=detail))
    if session.get_bind().dialect.name == "postgresql":  # delivered when the transaction commits
        session.execute(text(f"NOTIFY {CHANNEL}"))


def folder_versions(models_dir: Path) -> dict[tuple[str, str], Path]:
    """``(name, version) -> folder`` of the models folder (``<name>/<version>/`` or a flat
    ``<name>/``), read from each manifest; unreadable manifests are left out (and logged)."""
    found: dict[tuple[str, str], Path] = {}
    if not Path(models_dir).is_dir():
        return found
    for candidate in candidate_folders(models_dir):
        try:
            raw = json.loads((candidate / MANIFEST).read_text())
            key = (str(raw["name"]), str(raw["version"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("models folder %s: unreadable manifest: %s", candidate, exc)
            continue
        found.setdefault(key, candidate)
    return found


def _folder_files(folder: Path) -> dict[str, str] | None:
    raw = json.loads((folder / MANIFEST).read_text())
    names = [MANIFEST, WEIGHTS]
    strategy = raw.get("step_strategy") or {}
    if isinstance(strategy, dict) and isinstance(strategy.get("file"), str):
        names.append(strategy["file"])
    if not all((folder / n).is_file() for n in names):
        return None
    return {n: file_sha256(folder / n) for n in names}


def seed_catalog(*, session: Session, models_dir: Path, actor: str = "seed") -> list[str]:
    """Enter every version of the models folder into the catalog (origin ``folder``). A folder
    version whose files changed is re-entered (its adapted models then answer 410, as for any
    replaced weights); a published version is never overwritten by a folder. Returns what changed."""
    lock_named(session, LOCK)
    changed = []
    for (name, version), folder in folder_versions(models_dir).items():
        files = _folder_files(folder)
        if files is None:
            log.error("models folder %s: files missing; not entered in the catalog", folder)
            continue
        weights = files[WEIGHTS]
        row = session.get(RegistryVersionRow, (name, version))
        now = datetime.now(UTC)
        if row is None:
            session.add(RegistryVersionRow(name=name, version=version, weights_sha256=weights, files=files,
                                           origin="folder", state="active", published_at=now, published_by=actor))
            record(session, actor=actor, action="seed", name=name, version=version,
                   detail={"weights_sha256": weights, "folder": folder.relative_to(models_dir).as_posix()})
            changed.append(f"{name}@{version}")
        elif row.files != files and row.state != "purged":
            if row.origin != "folder":
                log.error("models folder %s holds %s@%s with other files than the published version; "
                          "the published one stays", folder, name, version)
                continue
            record(session, actor=actor, action="reseed", name=name, version=version,
                   detail={"from_weights_sha256": row.weights_sha256, "weights_sha256": weights})
            row.files, row.weights_sha256, row.published_at = files, weights, now
            changed.append(f"{name}@{version}")
    session.commit()
    return changed


def publish(*, session: Session, checked: CheckedVersion, store: ArtifactStore, actor: str,
            alias: str | None = None) -> str:
    """Upload the checked files, then make the version visible in one transaction: ``published``,
    or ``unchanged`` when the same files are already published under that name and version."""
    if alias is not None:
        _check_alias_name(alias)
    existing = session.get(RegistryVersionRow, (checked.name, checked.version))
    if existing is not None and existing.files != checked.files:
        raise VersionConflict(f"{checked.name}@{checked.version} is already published with other files "
                              f"(weights {existing.weights_sha256[:12]}); versions are immutable: "
                              f"publish under a new version")
    if existing is None:
        for file, sha in checked.files.items():
            if store.put((checked.folder / file).read_bytes()) != sha:
                raise CatalogError(f"{file} changed while it was being published; publish again")
    lock_named(session, LOCK)
    existing = session.get(RegistryVersionRow, (checked.name, checked.version))
    outcome = "unchanged"
    if existing is None:
        session.add(RegistryVersionRow(
            name=checked.name, version=checked.version, weights_sha256=checked.spec.weights_sha256,
            files=checked.files, origin="published", state="active", published_at=datetime.now(UTC),
            published_by=actor))
        record(session, actor=actor, action="publish", name=checked.name, version=checked.version,
               detail={"weights_sha256": checked.spec.weights_sha256, "files": checked.files})
        outcome = "published"
    elif existing.files != checked.files:
        raise VersionConflict(f"{checked.name}@{checked.version} was just published with other files")
    if alias is not None:
        _move_alias(session, checked.name, alias, checked.version, actor)
    session.commit()
    return outcome


def _check_alias_name(alias: str) -> None:
    if not ALIAS.match(alias):
        raise CatalogError(f"alias {alias!r}: a lower-case letter, then letters, digits or '-' "
                           f"(a version number is not an alias)")


def _active(session: Session, name: str, version: str) -> RegistryVersionRow:
    row = session.get(RegistryVersionRow, (name, version))
    if row is None:
        raise NotInCatalog(f"{name}@{version} is not in the catalog")
    if row.state != "active":
        raise CatalogError(f"{name}@{version} is {row.state}")
    return row


def _move_alias(session: Session, name: str, alias: str, version: str, actor: str) -> None:
    _active(session, name, version)
    row = session.get(RegistryAliasRow, (name, alias))
    before = row.version if row else None
    if row is None:
        row = RegistryAliasRow(name=name, alias=alias, version=version, moved_at=datetime.now(UTC))
        session.add(row)
    row.version, row.moved_at = version, datetime.now(UTC)
    record(session, actor=actor, action="alias", name=name, version=version,
           detail={"alias": alias, "from": before, "to": version})


def set_alias(*, session: Session, name: str, alias: str, version: str, actor: str) -> str | None:
    """Point ``name@alias`` at ``version`` (atomically); returns the version it pointed at."""
    _check_alias_name(alias)
    lock_named(session, LOCK)
    row = session.get(RegistryAliasRow, (name, alias))
    before = row.version if row else None
    _move_alias(session, name, alias, version, actor)
    session.commit()
    return before


def set_canary(*, session: Session, name: str, percent: int, actor: str) -> int:
    """Send ``percent`` of the tenants adapting with the bare ``name`` to ``name@canary`` (the
    same tenants every time); 0 stops it. Returns the previous percent."""
    if not 0 <= percent <= 100:
        raise CatalogError(f"percent must lie in [0, 100], got {percent}")
    lock_named(session, LOCK)
    if session.scalar(select(func.count()).select_from(RegistryVersionRow).where(
            RegistryVersionRow.name == name)) == 0:
        raise NotInCatalog(f"{name} is not in the catalog")
    if percent and session.get(RegistryAliasRow, (name, "canary")) is None:
        raise CatalogError(f"{name} has no canary alias: point {name}@canary at a version first")
    row = session.get(RegistryCanaryRow, name)
    before = row.percent if row else 0
    if row is None:
        row = RegistryCanaryRow(name=name, percent=percent, set_at=datetime.now(UTC))
        session.add(row)
    row.percent, row.set_at = percent, datetime.now(UTC)
    record(session, actor=actor, action="canary", name=name, version=None,
           detail={"from_percent": before, "percent": percent})
    session.commit()
    return before


def retire(*, session: Session, name: str, version: str, actor: str) -> None:
    """New adaptations with the version are refused and its adapted models answer 410 (each
    replica within its poll period); refused while an alias points at it."""
    lock_named(session, LOCK)
    row = _active(session, name, version)
    aliases = session.scalars(select(RegistryAliasRow.alias).where(
        RegistryAliasRow.name == name, RegistryAliasRow.version == version)).all()
    if aliases:
        raise CatalogError(f"{name}@{version} is what {', '.join(f'@{a}' for a in sorted(aliases))} "
                           f"point(s) at: move the alias first (metaserve meta-learners alias)")
    row.state = "retired"
    record(session, actor=actor, action="retire", name=name, version=version,
           detail={"weights_sha256": row.weights_sha256})
    session.commit()


def purge(*, session: Session, name: str, version: str, store: ArtifactStore, actor: str) -> int:
    """Delete a retired version's published files once no adapted model references it; returns
    the number of files deleted (a version from the models folder keeps its folder)."""
    lock_named(session, LOCK)
    row = session.get(RegistryVersionRow, (name, version))
    if row is None:
        raise NotInCatalog(f"{name}@{version} is not in the catalog")
    if row.state != "retired":
        raise CatalogError(f"{name}@{version} is {row.state}; retire it first")
    referencing = session.scalar(select(func.count()).select_from(AdaptedModelRow).where(
        AdaptedModelRow.meta_learner == name, AdaptedModelRow.meta_learner_version == version))
    if referencing:
        raise CatalogError(f"{referencing} adapted model(s) still reference {name}@{version}; purge "
                           f"once they are deleted or expired")
    kept = set()
    for other in session.scalars(select(RegistryVersionRow).where(RegistryVersionRow.state != "purged")):
        if (other.name, other.version) != (name, version):
            kept.update(other.files.values())
    doomed = [sha for sha in row.files.values() if sha not in kept] if row.origin == "published" else []
    row.state = "purged"
    record(session, actor=actor, action="purge", name=name, version=version,
           detail={"deleted_files": len(doomed)})
    session.commit()
    for sha in doomed:
        store.delete(sha)
    return len(doomed)


def history(*, session: Session, name: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(RegistryEventRow).where(RegistryEventRow.name == name)
                           .order_by(RegistryEventRow.id)).all()
    return [{"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action, "name": r.name,
             "version": r.version, "detail": r.detail} for r in rows]
