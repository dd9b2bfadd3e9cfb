"""``metaserve meta-learners publish | alias | canary | retire | purge | history``: operate on the catalog
with the server's own configuration (database, artifact store). Each prints one JSON object;
exit status 0 done, 2 refused (the message says which check or rule), 3 conflict (the version is
published with other files)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from sqlalchemy import inspect


def add_catalog_parsers(actions) -> None:
    publish = actions.add_parser("publish", help="check a version folder and publish it to every replica")
    publish.add_argument("folder", help="a version folder: manifest.json, weights.safetensors")
    publish.add_argument("--alias", default=None, help="also point NAME@ALIAS at it (e.g. canary)")
    alias = actions.add_parser("alias", help="point NAME@ALIAS at VERSION (stable: what the bare name serves)")
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version")
    canary = actions.add_parser("canary", help="send PERCENT of the tenants adapting with the bare NAME to "
                                "NAME@canary (sticky per tenant; 0 stops)")
    canary.add_argument("name")
    canary.add_argument("percent", type=int)
    retire = actions.add_parser("retire", help="refuse new adaptations; its adapted models answer 410")
    retire.add_argument("ref", metavar="NAME@VERSION")
    purge = actions.add_parser("purge", help="delete a retired version's files once nothing references it")
    purge.add_argument("ref", metavar="NAME@VERSION")
    history = actions.add_parser("history", help="every publish, alias, retire and purge of NAME")
    history.add_argument("name")


def _split(ref: str) -> tuple[str, str]:
    name, _, version = ref.partition("@")
    if not name or not version:
        raise ValueError(f"expected NAME@VERSION, got {ref!r}")
    return name, version


def catalog_command(args: argparse.Namespace, settings) -> int:  # noqa: ANN001 - Settings
    from app.catalog import operations as ops
    from app.catalog.artifacts import registry_store
    from app.catalog.validation import PublishRefused, check_version_folder
    from app.db.session import make_engine, make_session_factory

    actor = f"cli:{_user()}"
    engine = make_engine(settings.resolved_database_url)
    try:
        if not inspect(engine).has_table("registry_versions"):
            return _out({"error": "the database has no catalog yet: run `metaserve db upgrade` first"}, 2)
        with make_session_factory(engine)() as session:
            try:
                if args.action == "publish":
                    checked = check_version_folder(args.folder)
                    outcome = ops.publish(session=session, checked=checked, store=registry_store(settings),
                                          actor=actor, alias=args.alias)
                    return _out({"outcome": outcome, "ref": f"{checked.name}@{checked.version}",
                                 "weights_sha256": checked.spec.weights_sha256, "alias": args.alias,
                                 "revision": ops.revision(session)}, 0)
                if args.action == "alias":
                    before = ops.set_alias(session=session, name=args.name, alias=args.alias, version=args.version,
                                           actor=actor)
                    return _out({"alias": f"{args.name}@{args.alias}", "from": before, "to": args.version}, 0)
                if args.action == "canary":
                    before = ops.set_canary(session=session, name=args.name, percent=args.percent, actor=actor)
                    return _out({"canary": args.name, "from_percent": before, "percent": args.percent}, 0)
                if args.action == "retire":
                    name, version = _split(args.ref)
                    ops.retire(session=session, name=name, version=version, actor=actor)
                    return _out({"retired": args.ref}, 0)
                if args.action == "purge":
                    name, version = _split(args.ref)
                    deleted = ops.purge(session=session, name=name, version=version,
                                        store=registry_store(settings), actor=actor)
                    return _out({"purged": args.ref, "deleted_files": deleted}, 0)
                for event in ops.history(session=session, name=args.name):
                    print(json.dumps(event))
                return 0
            except PublishRefused as exc:
                return _out({"refused": exc.check, "detail": exc.detail}, 2)
            except ops.VersionConflict as exc:
                return _out({"conflict": str(exc)}, 3)
            except (ops.CatalogError, ValueError) as exc:
                return _out({"refused": str(exc)}, 2)
    finally:
        engine.dispose()


def _out(payload: dict, code: int) -> int:
    print(json.dumps(payload), file=sys.stdout if code == 0 else sys.stderr)
    return code


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
