"""A tiny synthetic stand-in for :class:`esg_lib.data.DataBundle` (tests and dry runs only).

It follows the team contract's Data API (``train``/``val``/``test`` datasets with uint8
``images``, int64 ``labels``, ``paths`` and ``normalize``; ``class_names``, ``display_names``,
``dataset_name``, ``identity``, ``mean``, ``std``) so that the engine can be exercised without
decoding real images. Each class is a distinct, learnable pattern (a bright stripe at a
class-specific position) plus noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


class TensorImages(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, paths: list[str]):
        self.images, self.labels, self.paths = images, labels, paths
        self.mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(STD).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        return (batch.float() / 255.0 - self.mean) / self.std

    def __getitem__(self, i: int):
        return self.normalize(self.images[i : i + 1])[0], int(self.labels[i])


@dataclass
class SyntheticBundle:
    train: TensorImages
    val: TensorImages
    test: TensorImages
    class_names: list[str]
    display_names: list[str]
    dataset_name: str = "synthetic"
    identity: dict[str, Any] = field(default_factory=dict)
    mean: tuple = MEAN
    std: tuple = STD


def _make(n: int, img_size: int, num_classes: int, gen: torch.Generator, tag: str) -> TensorImages:
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=gen)]
    images = (torch.rand(n, 3, img_size, img_size, generator=gen) * 80 + 40)
    band = max(1, img_size // num_classes)
    for i, y in enumerate(labels.tolist()):
        images[i, :, y * band : (y + 1) * band, :] += 120
    return TensorImages(images.clamp(0, 255).to(torch.uint8), labels.long(),
                        [f"{tag}/{i}.png" for i in range(n)])


def synthetic_bundle(n_train: int = 64, n_val: int = 16, n_test: int = 16, img_size: int = 32,
                     num_classes: int = 3, seed: int = 0) -> SyntheticBundle:
    gen = torch.Generator().manual_seed(seed)
    names = [f"class{k}" for k in range(num_classes)]
    ident = dict(dataset="synthetic", n=(n_train, n_val, n_test), img_size=img_size,
                 num_classes=num_classes, seed=seed)
    return SyntheticBundle(_make(n_train, img_size, num_classes, gen, "train"),
                           _make(n_val, img_size, num_classes, gen, "val"),
                           _make(n_test, img_size, num_classes, gen, "test"),
                           names, [n.upper() for n in names], identity=ident)
