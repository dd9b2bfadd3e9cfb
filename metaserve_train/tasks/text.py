"""Few-shot intent classification tasks from CLINC150 and HWU64, over sentence embeddings.

Larson et al. (2019), "An Evaluation Dataset for Intent Classification and Out-of-Scope
Prediction" (CLINC150, CC BY 3.0); Liu et al. (2019), "Benchmarking Natural Language
Understanding Services for building Conversational Agents" (HWU64, CC BY 4.0).

Sentences are embedded once by the pinned encoder and cached (safetensors) under the cache
directory, keyed by the data file's sha256; episodes are then drawn over the embeddings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from metaserve_train.tasks.episodes import EmbeddingEpisodes
from metaserve_train.tasks.tensor_cache import cached_tensors


@dataclass
class TextSplit:
    """Sentences with their intents, and (once embedded) ``[n, dim]`` embeddings."""

    name: str
    sentences: list[str]
    intents: list[str]
    sha256: str
    embeddings: Tensor | None = None

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.intents))


def _sha(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def load_clinc150(root: Path, split: str) -> TextSplit:
    """``train`` / ``val`` / ``test`` (in-scope) or ``oos_test`` etc. from ``data_full.json``."""
    path = Path(root) / "clinc150" / "data_full.json"
    rows = json.loads(path.read_text())[split]
    return TextSplit(f"clinc150/{split}", [r[0] for r in rows], [r[1] for r in rows], _sha(path))


def load_lines(folder: Path, name: str) -> TextSplit:
    """A ``seq.in`` / ``label`` folder (HWU64 splits, the CLINC150 few-shot splits)."""
    seq, label = Path(folder) / "seq.in", Path(folder) / "label"
    sentences = seq.read_text().splitlines()
    intents = label.read_text().splitlines()
    if len(sentences) != len(intents):
        raise ValueError(f"{folder}: {len(sentences)} sentences but {len(intents)} labels")
    return TextSplit(name, sentences, intents, _sha(seq, label))


def load_split(root: Path, dataset: str, split: str) -> TextSplit:
    if dataset == "clinc150":
        return load_clinc150(root, split)
    if dataset == "clinc150-fewshot":
        return load_lines(Path(root) / "clinc150-fewshot" / split, f"clinc150-fewshot/{split}")
    if dataset == "hwu64":
        return load_lines(Path(root) / "hwu64" / split, f"hwu64/{split}")
    raise ValueError(f"unknown text dataset {dataset!r}")


def embed(split: TextSplit, encoder_name: str, cache_dir: Path | None, runtime: str = "torch") -> TextSplit:
    """Fill ``split.embeddings`` (from the cache when the data, encoder and runtime are the same)."""
    from app.meta.text_encoder import EMBEDDING_KEYS, load_encoder

    def compute():
        return {"embeddings": load_encoder(encoder_name, runtime).encode(split.sentences, batch_size=128)}, {}

    key = f"{encoder_name}|{split.name}|{split.sha256}" + EMBEDDING_KEYS[runtime]
    tensors, _ = cached_tensors(cache_dir, "text", key, compute)
    split.embeddings = tensors["embeddings"]
    return split


def embed_label_names(labels: list[str], encoder_name: str, runtime: str = "torch") -> Tensor | None:
    """The labels read as phrases and embedded, as the service's text codec gives them to a
    learner that reads label names (None where some label has no letters)."""
    from app.meta.text_codecs import label_phrases
    from app.meta.text_encoder import load_encoder

    phrases = label_phrases(labels)
    return None if phrases is None else torch.as_tensor(load_encoder(encoder_name, runtime).encode(phrases))


def subset(split: TextSplit, keep) -> TextSplit:
    """The sentences of the intents for which ``keep(intent)`` holds."""
    rows = [i for i, intent in enumerate(split.intents) if keep(intent)]
    return TextSplit(split.name, [split.sentences[i] for i in rows], [split.intents[i] for i in rows],
                     split.sha256, None if split.embeddings is None else split.embeddings[rows])


class TextTasks(EmbeddingEpisodes):
    """N-way K-shot episodes over embedded intents (intents with too few sentences skipped)."""

    def __init__(self, splits: list[TextSplit], ways: int, shots: int, queries: int,
                 device: str = "cpu") -> None:
        pools: list[Tensor] = []
        for split in splits:
            assert split.embeddings is not None, "embed() the split first"
            index: dict[str, list[int]] = {}
            for i, intent in enumerate(split.intents):
                index.setdefault(f"{split.name}|{intent}", []).append(i)
            pools += [split.embeddings[rows] for rows in index.values()]
        super().__init__(pools, ways, shots, queries, device, what="intents")


# the protocol: fixed few-shot supports shipped with each dataset, and its test split
FIXED_SUPPORTS = {
    ("hwu64", 10): ("hwu64", "train_10"), ("hwu64", 5): ("hwu64", "train_5"),
    ("clinc150", 10): ("clinc150-fewshot", "train_10"), ("clinc150", 5): ("clinc150-fewshot", "train_5"),
}
TEST_SPLITS = {"hwu64": ("hwu64", "test"), "clinc150": ("clinc150", "test")}
# where hyperparameters are chosen (queries of few-shot supports drawn from the training split)
VALIDATION_SPLITS = {"hwu64": ("hwu64", "valid"), "clinc150": ("clinc150", "val")}
FULL_TRAIN = {"hwu64": ("hwu64", "train"), "clinc150": ("clinc150", "train")}


def draw_support(split: TextSplit, shots: int, generator: torch.Generator) -> TextSplit:
    """``shots`` random sentences of every intent of ``split`` (all of an intent's when fewer)."""
    index: dict[str, list[int]] = {}
    for i, intent in enumerate(split.intents):
        index.setdefault(intent, []).append(i)
    rows = []
    for intent in sorted(index):
        pool = index[intent]
        pick = torch.randperm(len(pool), generator=generator)[:shots].tolist()
        rows.extend(pool[j] for j in pick)
    return TextSplit(f"{split.name}/{shots}-shot", [split.sentences[i] for i in rows],
                     [split.intents[i] for i in rows], split.sha256,
                     None if split.embeddings is None else split.embeddings[rows])
