"""mkdocs hooks: pages generated at build time from what the code and the models folder say, so the
site cannot drift from them.

- ``reference/rest-api.md``: every operation of the OpenAPI document (built from the app, no server).
- ``meta-learners/<name>.md``: one card per shipped meta-learner, from its manifests (every version:
  what it is, data, exact command, seed, checksums, metrics) with the plots beside them.
- ``benchmarks/*.png``: the benchmark plots the performance page shows.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
METHODS = ("get", "post", "put", "patch", "delete")


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "reference/rest-api.md", content=rest_reference()))
    for name, versions in meta_learners().items():
        files.append(File.generated(config, f"meta-learners/{name}.md", content=card(name, versions)))
        for version, folder in versions:
            for plot in sorted(folder.glob("*.png")):
                files.append(File.generated(config, f"meta-learners/{name}/{version}/{plot.name}",
                                            content=plot.read_bytes()))
    for plot in sorted((REPO / "benchmarks" / "results").glob("*.png")):
        files.append(File.generated(config, f"benchmarks/{plot.name}", content=plot.read_bytes()))
    return files


def on_config(config: Any) -> Any:
    """The cards under "Meta-learners", after its overview page."""
    for entry in config["nav"]:
        if isinstance(entry, dict) and "Meta-learners" in entry:
            entry["Meta-learners"].extend({name: f"meta-learners/{name}.md"} for name in meta_learners())
    return config


# --- REST reference ----------------------------------------------------------------------------

def openapi_document() -> dict:
    sys.path.insert(0, str(REPO))
    from app.core.config import Settings
    from app.main import create_app

    with tempfile.TemporaryDirectory(prefix="metaserve-docs-") as root:
        settings = Settings(data_dir=Path(root), database_url=f"sqlite:///{root}/docs.db",
                            models_dir=MODELS, warm_up=False)
        return create_app(settings).openapi()


def schema_name(schema: dict | None) -> str:
    if not schema:
        return "–"
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[1]}`"
    if schema.get("type") == "array":
        return f"array of {schema_name(schema.get('items'))}"
    if "anyOf" in schema or "oneOf" in schema:
        return " or ".join(schema_name(s) for s in schema.get("anyOf", schema.get("oneOf", [])))
    return f"`{schema.get('type', 'object')}`"


def one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def rest_reference() -> str:
    doc = openapi_document()
    out = [f"# REST API reference\n\n{doc['info']['title']} {doc['info']['version']}. Generated from the "
           "OpenAPI document the service serves at `/openapi.json` (interactive: `/docs`, `/redoc`). "
           "Every error is an RFC 9457 `application/problem+json` body; what each status means for each "
           "operation is listed with it. How the pieces fit together: [Using the API](../using-the-api.md).\n"]
    for path, item in doc["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            out.append(f"## `{method.upper()} {path}`\n")
            if op.get("summary"):
                out.append(f"**{one_line(op['summary'])}**\n")
            if op.get("description"):
                out.append(op["description"].strip() + "\n")
            params = op.get("parameters", [])
            if params:
                out.append("| parameter | in | type | required | meaning |\n|---|---|---|---|---|")
                for p in params:
                    out.append(f"| `{p['name']}` | {p['in']} | {schema_name(p.get('schema'))} | "
                               f"{'yes' if p.get('required') else 'no'} | {one_line(p.get('description'))} |")
                out.append("")
            body = op.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                out.append(f"Request body ({media}): {schema_name(content.get('schema'))}\n")
            out.append("| status | meaning |\n|---|---|")
            for status, response in op.get("responses", {}).items():
                out.append(f"| {status} | {one_line(response.get('description'))} |")
            out.append("")
    schemas = doc.get("components", {}).get("schemas", {})
    out.append("## Schemas\n")
    for name, schema in sorted(schemas.items()):
        out.append(f"### `{name}`\n")
        if schema.get("description"):
            out.append(one_line(schema["description"]) + "\n")
        props = schema.get("properties", {})
        if props:
            required = set(schema.get("required", []))
            out.append("| field | type | required | meaning |\n|---|---|---|---|")
            for field, spec in props.items():
                out.append(f"| `{field}` | {schema_name(spec)} | {'yes' if field in required else 'no'} | "
                           f"{one_line(spec.get('description'))} |")
            out.append("")
    return "\n".join(out) + "\n"


# --- meta-learner cards ------------------------------------------------------------------------

def meta_learners() -> dict[str, list[tuple[str, Path]]]:
    """name -> [(version, folder)], newest version first."""
    sys.path.insert(0, str(REPO))
    from app.meta.checkpoint import version_key

    found: dict[str, list[tuple[str, Path]]] = {}
    for manifest in sorted(MODELS.glob("*/*/manifest.json")):
        found.setdefault(manifest.parent.parent.name, []).append((manifest.parent.name, manifest.parent))
    return {name: sorted(versions, key=lambda item: version_key(item[0]), reverse=True)
            for name, versions in sorted(found.items())}


def metric_cell(row: dict) -> str:
    mean = row.get("mean")
    if mean is None:
        return "–"
    if row.get("metric") in ("accuracy", "error_rate"):
        text = f"{100 * mean:.2f}%"
        if "ci95" in row:
            text += f" ± {100 * row['ci95']:.2f}"
        if "random_mean" in row:
            text += f" (5 draws: {100 * row['random_mean']:.2f} ± {100 * row.get('random_std', 0):.2f})"
        return text
    return f"{mean:.3f}" + (f" ± {row['ci95']:.3f}" if "ci95" in row else "")


def card(name: str, versions: list[tuple[str, Path]]) -> str:
    newest = json.loads((versions[0][1] / "manifest.json").read_text())
    kind = newest.get("input", {}).get("kind", "vector")
    out = [f"# {name}\n",
           f"{newest.get('family', '?')}-based · algorithm `{newest.get('algorithm', '?')}` · "
           f"{newest.get('task_type', '?')} · input `{kind}`\n"]
    if newest.get("description"):
        out.append(newest["description"].strip() + "\n")
    preprocessing = newest.get("input", {}).get("preprocessing")
    if preprocessing:
        out.append(f"Input: {preprocessing}.\n")
    out.append(f"Adapt with `\"meta_learner\": \"{name}\"` (the `stable` alias, else the newest version) or "
               f"`\"{name}@VERSION\"`; `GET /v1/meta-learners/{name}` shows what a deployment serves.\n")
    for version, folder in versions:
        manifest = json.loads((folder / "manifest.json").read_text())
        training = manifest.get("training", {})
        out.append(f"## {version}\n")
        rows = [("weights sha256", f"`{manifest.get('weights_sha256', '–')}`")]
        if training.get("command"):
            rows.append(("command", f"`{training['command']}`"))
        for key in ("seed", "seconds", "hardware", "iterations_done"):
            if key in training:
                rows.append((key.replace("_", " "), str(training[key])))
        if "init_from" in training or manifest.get("base"):
            base = training.get("init_from") or manifest.get("base")
            if base:
                rows.append(("started from", f"`{base}`"))
        for data, checksum in training.get("data_checksums", {}).items():
            rows.append((f"data `{data}`", f"sha256 `{checksum}`"))
        out.append("| | |\n|---|---|")
        out.extend(f"| {k} | {one_line(v)} |" for k, v in rows)
        out.append("")
        evaluation = manifest.get("evaluation", {})
        if evaluation:
            out.append("| protocol | metric | result | measured on | command |\n|---|---|---|---|---|")
            for protocol, row in evaluation.items():
                if not isinstance(row, dict):
                    continue
                size = (f"{row['tasks']} tasks" if "tasks" in row
                        else f"{row['items']} items" if "items" in row else "–")
                command = f"`{row['command']}`" if row.get("command") else "–"
                out.append(f"| {protocol} | {row.get('metric', '–')} | {metric_cell(row)} | {size} | {command} |")
            out.append("")
        for plot in sorted(folder.glob("*.png")):
            out.append(f"![{name} {version}: {plot.stem.replace('_', ' ')}]({name}/{version}/{plot.name})\n")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # print a generated page: python scripts/mkdocs_hooks.py rest|NAME
    os.environ.setdefault("METASERVE_LOG_LEVEL", "warning")
    what = sys.argv[1] if len(sys.argv) > 1 else "rest"
    print(rest_reference() if what == "rest" else card(what, meta_learners()[what]))
