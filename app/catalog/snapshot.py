"""Build the registry a process serves from the catalog: every active or retired version of the
database, loaded from the models folder (origin ``folder``) or from the registry's artifact
store (origin ``published``). Versions already loaded with the same weights are reused; one
that fails to load is left out and named in ``refused`` (``/readyz`` shows it), the rest serve."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.catalog.artifacts import materialise
from app.catalog.operations import folder_versions, revision
from app.db.models import RegistryAliasRow, RegistryCanaryRow, RegistryVersionRow
from app.engine.registry import LoadRefused, RegisteredLearner, Registry, load_registered, ordered_versions
from app.storage.artifacts import ArtifactCorrupted, ArtifactMissing, ArtifactStore, ArtifactStoreUnavailable

log = logging.getLogger("metaserve.catalog")


def build_registry(*, factory: sessionmaker[Session], models_dir: Path, store: ArtifactStore, cache_dir: Path,
                   device: torch.device | str, previous: Registry | None = None) -> Registry:
    with factory() as session:
        at = revision(session)
        rows = session.scalars(select(RegistryVersionRow).where(RegistryVersionRow.state != "purged")).all()
        aliases: dict[str, dict[str, str]] = {}
        for a in session.scalars(select(RegistryAliasRow)):
            aliases.setdefault(a.name, {})[a.alias] = a.version
        canary = {c.name: c.percent for c in session.scalars(select(RegistryCanaryRow)) if c.percent}
    folders = folder_versions(models_dir) if any(r.origin == "folder" for r in rows) else {}
    versions: dict[str, dict[str, RegisteredLearner]] = {}
    refused: dict[str, str] = {}
    for row in rows:
        ref = f"{row.name}@{row.version}"
        old = previous.versions.get(row.name, {}).get(row.version) if previous else None
        if old is not None and old.weights_sha256 == row.weights_sha256:
            versions.setdefault(row.name, {})[row.version] = old
            continue
        try:
            if row.origin == "folder":
                folder = folders.get((row.name, row.version))
                if folder is None:
                    raise LoadRefused(f"not in this machine's models folder {models_dir}")
            else:
                folder = materialise(store, row.files, Path(cache_dir) / row.name / row.version)
            reg = load_registered(folder, device)
            if (reg.name, reg.version, reg.weights_sha256) != (row.name, row.version, row.weights_sha256):
                raise LoadRefused(f"the folder holds {reg.ref} with weights {reg.weights_sha256[:12]}, "
                                  f"the catalog {ref} with {row.weights_sha256[:12]}")
        except (LoadRefused, ArtifactMissing, ArtifactCorrupted, ArtifactStoreUnavailable, OSError) as exc:
            refused[ref] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, LoadRefused) else str(exc)
            log.error("refusing meta-learner %s: %s", ref, refused[ref])
            continue
        versions.setdefault(row.name, {})[row.version] = reg
    retired = {(r.name, r.version) for r in rows if r.state == "retired"}
    return Registry(ordered_versions(versions), refused, aliases, retired, at, canary)
