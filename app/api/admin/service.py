"""The catalog's operations for the admin routes: uploads written to a private folder, checked
like ``metaserve meta-learners publish``, then published; catalog errors become problems."""

from __future__ import annotations

import base64
import binascii
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session

from app.api.admin.schemas import AliasResult, CanaryResult, PublishResult, StateResult
from app.catalog import operations as ops
from app.catalog.artifacts import registry_store
from app.catalog.validation import PublishRefused, check_version_folder
from app.core.config import Settings
from app.core.errors import CatalogConflict, InvalidInputs, PublishCheckFailed, UnknownMetaLearner

FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_FILES = 3  # manifest, weights, step-strategy model


@contextmanager
def catalog_errors() -> Iterator[None]:
    try:
        yield
    except PublishRefused as exc:
        raise PublishCheckFailed(f"{exc.check}: {exc.detail}", check=exc.check) from exc
    except ops.NotInCatalog as exc:
        raise UnknownMetaLearner(str(exc)) from exc
    except ops.CatalogError as exc:  # VersionConflict included
        raise CatalogConflict(str(exc)) from exc


def _decode(files: dict[str, str]) -> dict[str, bytes]:
    if not files or len(files) > MAX_FILES:
        raise InvalidInputs(f"files: 1 to {MAX_FILES} files (manifest.json, weights.safetensors, a step strategy)")
    out = {}
    for name, data in files.items():
        if not FILE_NAME.match(name):
            raise InvalidInputs(f"files: {name!r} is not a plain file name")
        try:
            out[name] = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInputs(f"files[{name!r}]: not valid base64") from exc
    return out


def publish_upload(*, session: Session, settings: Settings, files: dict[str, str], alias: str | None,
                   actor: str) -> PublishResult:
    decoded = _decode(files)
    folder = settings.data_dir / "registry-uploads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        for name, data in decoded.items():
            (folder / name).write_bytes(data)
        with catalog_errors():
            checked = check_version_folder(Path(folder))
            outcome = ops.publish(session=session, checked=checked, store=registry_store(settings), actor=actor,
                                  alias=alias)
        return PublishResult(outcome=outcome, ref=f"{checked.name}@{checked.version}",
                             weights_sha256=checked.spec.weights_sha256, alias=alias,
                             revision=ops.revision(session))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def move_alias(*, session: Session, name: str, alias: str, version: str, actor: str) -> AliasResult:
    with catalog_errors():
        before = ops.set_alias(session=session, name=name, alias=alias, version=version, actor=actor)
    return AliasResult(alias=f"{name}@{alias}", previous=before, version=version)


def set_canary(*, session: Session, name: str, percent: int, actor: str) -> CanaryResult:
    with catalog_errors():
        before = ops.set_canary(session=session, name=name, percent=percent, actor=actor)
    return CanaryResult(name=name, previous_percent=before, percent=percent)


def retire_version(*, session: Session, name: str, version: str, actor: str) -> StateResult:
    with catalog_errors():
        ops.retire(session=session, name=name, version=version, actor=actor)
    return StateResult(ref=f"{name}@{version}", state="retired")


def purge_version(*, session: Session, settings: Settings, name: str, version: str, actor: str) -> StateResult:
    with catalog_errors():
        deleted = ops.purge(session=session, name=name, version=version, store=registry_store(settings),
                            actor=actor)
    return StateResult(ref=f"{name}@{version}", state="purged", deleted_files=deleted)
