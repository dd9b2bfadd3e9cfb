"""Manifests parse once into typed objects; a bad version is refused, the others serve."""

from __future__ import annotations

import json
import shutil

import pytest

from app.core.errors import MetaLearnerVersionRetired, UnknownMetaLearner
from app.engine.registry import load_registry
from tests.conftest import REPO


def installed(tmp_path, edit=None, version="1.0.0"):
    target = tmp_path / "models" / "sinusoid-maml" / version
    shutil.copytree(REPO / "models" / "sinusoid-maml" / "1.0.0", target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = version
    if edit:
        edit(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path / "models"


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(surprise=1), "surprise"),
    (lambda m: m["model"]["hparams"].update(inner_lrr=0.1), "inner_lrr"),
    (lambda m: m["input"].update(kind="audio"), "audio"),
    (lambda m: m["model"]["hparams"].update(inner_loss_scale="ways"), "reference_ways"),
    (lambda m: m["limits"].update(max_ways="many"), "max_ways"),
])
def test_a_manifest_with_unknown_or_bad_keys_is_refused(tmp_path, edit, message):
    models = installed(tmp_path, edit)
    installed(tmp_path, None, version="0.9.0")
    registry = load_registry(models)
    assert [r.ref for r in registry.all()] == ["sinusoid-maml@0.9.0"]
    assert message in registry.refused["sinusoid-maml/1.0.0"]


def test_a_folder_must_be_named_after_its_version(tmp_path):
    target = installed(tmp_path) / "sinusoid-maml" / "1.0.0"
    target.rename(target.with_name("2.0.0"))
    registry = load_registry(tmp_path / "models")
    assert not registry.all() and "named after its version" in registry.refused["sinusoid-maml/2.0.0"]


def test_versions_resolve_newest_pinned_and_exact(tmp_path):
    installed(tmp_path, version="1.2.0")
    installed(tmp_path, version="1.10.0")
    registry = load_registry(tmp_path / "models")
    assert registry.resolve("sinusoid-maml").version == "1.10.0"  # numeric, not lexical
    pinned = registry.resolve("sinusoid-maml@1.2.0")
    assert registry.exact("sinusoid-maml", "1.2.0", pinned.weights_sha256) is pinned
    with pytest.raises(UnknownMetaLearner):
        registry.resolve("sinusoid-maml@3")
    with pytest.raises(MetaLearnerVersionRetired):
        registry.exact("sinusoid-maml", "1.2.0", "0" * 64)
    with pytest.raises(MetaLearnerVersionRetired):
        registry.exact("sinusoid-maml", "0.1.0", pinned.weights_sha256)


def test_a_text_learner_without_its_encoder_is_refused_and_the_rest_serve(tmp_path, monkeypatch):
    from app.meta import text_encoder
    from app.meta.encoder_sources import PackagedModel

    source = REPO / "models" / "text-protonet" / "1.0.0"
    shutil.copytree(source, tmp_path / "models" / "text-protonet" / "1.0.0")
    installed(tmp_path)
    spec = text_encoder.ENCODERS["all-MiniLM-L6-v2"]
    monkeypatch.setitem(text_encoder.ENCODERS, "all-MiniLM-L6-v2",
                        text_encoder.EncoderSpec(spec.name, PackagedModel("no_such_package_here", "w"),
                                                 spec.sha256, spec.dim))
    registry = load_registry(tmp_path / "models")
    assert [r.ref for r in registry.all()] == ["sinusoid-maml@1.0.0"]
    assert "not installed" in registry.refused["text-protonet/1.0.0"]
    monkeypatch.setitem(text_encoder.ENCODERS, "all-MiniLM-L6-v2",
                        text_encoder.EncoderSpec(spec.name, spec.source, "0" * 64, spec.dim))
    assert "does not match the pinned" in load_registry(tmp_path / "models").refused["text-protonet/1.0.0"]
