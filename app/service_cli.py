"""Service sub-commands of ``metaserve``: serve, db upgrade, meta-learners list."""

from __future__ import annotations

import argparse
import json


def run_service_command(args: argparse.Namespace) -> int:
    from app.core.config import get_settings

    settings = get_settings()
    if args.command == "serve":
        import uvicorn

        from app.main import create_app

        host = args.host or settings.host
        port = args.port or settings.port
        common = {"host": host, "port": port, "log_level": settings.log_level, "access_log": False,
                  "limit_concurrency": settings.max_connections, "timeout_keep_alive": 5}
        if settings.processes > 1:
            # several server processes behind the one port (uvicorn's supervisor), each with its
            # own engine, batcher and state cache, sharing the database and the artifact store
            uvicorn.run("app.main:create_app", factory=True, workers=settings.processes, **common)
        else:
            uvicorn.run(create_app(settings), **common)
    elif args.command == "worker":
        from app.jobs.worker import run_worker

        return run_worker(settings)
    elif args.command == "db" and args.action == "reconcile-usage":
        return reconcile_usage_command(settings)
    elif args.command == "db":
        from app.db.migrate import upgrade

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.resolved_database_url)
        print(f"database at revision head: {redact(settings.resolved_database_url)}")
        from app.catalog.operations import seed_catalog
        from app.db.session import make_engine, make_session_factory

        engine = make_engine(settings.resolved_database_url)
        try:
            with make_session_factory(engine)() as session:
                seeded = seed_catalog(session=session, models_dir=settings.models_dir, actor="db upgrade")
        finally:
            engine.dispose()
        print(f"catalog: {len(seeded)} version(s) entered from {settings.models_dir}")
    elif args.command == "meta-learners" and args.action != "list":
        from app.catalog.cli import catalog_command

        return catalog_command(args, settings)
    elif args.command == "meta-learners":
        from app.engine.registry import load_registry

        registry = load_registry(settings.models_dir)
        newest = {reg.ref for reg in registry.learners.values()}
        for reg in registry.all():
            print(json.dumps({"name": reg.name, "version": reg.version, "newest": reg.ref in newest,
                              "algorithm": reg.spec.algorithm, "task_type": reg.task_type,
                              "evaluation": {k: {"metric": v.get("metric"), "mean": round(v["mean"], 4)}
                                             for k, v in reg.spec.evaluation.items()}}))
        for name, why in registry.refused.items():
            print(json.dumps({"name": name, "refused": why}))
        return 1 if registry.refused else 0
    elif args.command == "keys":
        return keys_command(args, settings)
    return 0


def keys_command(args: argparse.Namespace, settings) -> int:  # noqa: ANN001
    from sqlalchemy import inspect
    from sqlalchemy.exc import OperationalError

    from app.api.auth.service import create_key, list_keys, revoke_key
    from app.db.session import make_engine, make_session_factory

    engine = make_engine(settings.resolved_database_url)
    try:
        try:
            ready = inspect(engine).has_table("api_keys")
        except OperationalError as exc:
            print(f"cannot open the database {redact(settings.resolved_database_url)} "
                  f"({type(exc.orig).__name__}); check METASERVE_DATABASE_URL / METASERVE_DATA_DIR, "
                  "or run `metaserve db upgrade` to create it")
            return 2
        if not ready:
            print(f"the database {redact(settings.resolved_database_url)} has no tables yet: "
                  "run `metaserve db upgrade` first")
            return 2
        with make_session_factory(engine)() as session:
            if args.action == "create":
                scope = "admin" if args.admin else "tenant"
                key_id, key = create_key(session=session, tenant=args.tenant, scope=scope)
                print(f"key id: {key_id}\ntenant: {args.tenant}\nscope: {scope}\nkey (shown once): {key}")
            elif args.action == "revoke":
                if not revoke_key(session=session, key_id=args.key_id):
                    print(f"no active key with id {args.key_id}")
                    return 1
                print(f"revoked {args.key_id}")
            else:
                for row in list_keys(session=session):
                    state = "revoked" if row.revoked_at else "active"
                    print(f"{row.id}  {row.tenant}  {row.scope}  {state}  created {row.created_at:%Y-%m-%d}")
    finally:
        engine.dispose()
    return 0


def reconcile_usage_command(settings) -> int:  # noqa: ANN001 - Settings
    """``metaserve db reconcile-usage``: every tenant's model counter set to its row count."""
    from sqlalchemy import inspect

    from app.db.session import make_engine, make_session_factory
    from app.db.tenant_usage import reconcile_usage

    engine = make_engine(settings.resolved_database_url)
    try:
        if not inspect(engine).has_table("tenant_usage"):
            print(f"no tenant_usage table in {redact(settings.resolved_database_url)}: "
                  "run `metaserve db upgrade` first")
            return 2
        changed = reconcile_usage(make_session_factory(engine))
    finally:
        engine.dispose()
    for tenant, (before, after) in changed.items():
        print(f"tenant {tenant}: {'no counter' if before is None else before} -> {after}")
    print(f"reconciled: {len(changed)} counter(s) changed")
    return 0


def redact(url: str) -> str:
    """Hide a password in a database URL."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<unparseable URL>"
