"""The ``metaserve`` command: serve, workers, database, API keys and the catalog of meta-learners.

Other packages add sub-commands through the ``metaserve.commands`` entry-point group: each entry is
a function ``register(subparsers)`` that adds its parsers and sets ``handler`` (``args -> exit
code``) as their default. The training package registers ``train``, ``evaluate``,
``fit-strategy`` and ``meta-train`` this way, so the service never imports it.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from app.catalog.cli import add_catalog_parsers

COMMAND_GROUP = "metaserve.commands"
SERVICE_COMMANDS = frozenset({"serve", "worker", "db", "meta-learners", "keys"})


def build_parser(*, with_plugins: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metaserve", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument("--host", default=None, help="default: METASERVE_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="default: METASERVE_PORT (8000)")

    sub.add_parser("worker", help="run adaptation jobs only (no HTTP); scale these separately")

    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "reconcile-usage"],
                    help="upgrade: apply migrations; reconcile-usage: recount each tenant's models "
                         "(after a rolling upgrade from before migration 0010)")

    ml = sub.add_parser("meta-learners", help="the catalog of meta-learners: list, publish, alias, "
                        "retire, purge, history")
    ml_actions = ml.add_subparsers(dest="action", required=True)
    ml_actions.add_parser("list", help="every version of the models folder, newest marked, metrics named")
    add_catalog_parsers(ml_actions)

    keys = sub.add_parser("keys", help="API keys (tenants)")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="create a key; it is printed once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--admin", action="store_true", help="an admin-scope key: it may also publish, alias, "
                        "retire and purge meta-learners over /v1/admin (METASERVE_ADMIN_API_ENABLED)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    keys_sub.add_parser("list", help="list key ids, tenants and states")

    if with_plugins:
        for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
            try:
                register = entry.load()
            except ImportError:  # registered but not installed (the container ships the service only)
                continue
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    # the service's own commands load no plugin: a server process never imports the training package
    args = build_parser(with_plugins=command not in SERVICE_COMMANDS).parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is not None:
        return handler(args)
    from app.service_cli import run_service_command

    return run_service_command(args)


if __name__ == "__main__":
    sys.exit(main())
