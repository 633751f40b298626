"""Synthetic features and tiny in-memory datasets for the benchmark tests (no other helpers' code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from equivision.benchmarks.probes import FeatureSplit, ProbeConfig


def fast_cfg(**kw) -> ProbeConfig:
    """A probe protocol small enough for a unit test."""
    base = dict(epochs=40, batch_size=32, lr_grid=(1e-2,), hidden=32, eval_pairs_per_object=4, seed=0)
    base.update(kw)
    return ProbeConfig(**base)


def latents(rng: np.random.Generator, n: int, v: int, size: int = 7) -> np.ndarray:
    lat = rng.uniform(-1.5, 1.5, (n, v, size))
    lat[..., 3:] = rng.uniform(0, 1, (n, v, size - 3))
    return lat


def linear_split(n: int, v: int, num_classes: int, seed: int, noise: float = 0.0) -> FeatureSplit:
    """Features = [one-hot label scaled, latents, extra random dims] @ a fixed random invertible mix.

    Any linear function of the label and of a view's latent is linearly recoverable from its features.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    lat = latents(rng, n, v)
    onehot = np.broadcast_to(np.eye(num_classes)[labels][:, None, :] * 3.0, (n, v, num_classes))
    raw = np.concatenate([onehot, lat, rng.normal(size=(n, v, 2))], axis=-1)
    mix = np.random.default_rng(123).normal(size=(raw.shape[-1], raw.shape[-1])) + 3 * np.eye(raw.shape[-1])
    feats = raw @ mix / 3.0 + noise * rng.normal(size=raw.shape)
    return FeatureSplit(torch.tensor(feats, dtype=torch.float32), torch.tensor(lat), torch.tensor(labels))


def noise_split(n: int, v: int, num_classes: int, dim: int, seed: int) -> FeatureSplit:
    """Features independent of latents and labels."""
    rng = np.random.default_rng(seed)
    return FeatureSplit(
        torch.tensor(rng.normal(size=(n, v, dim)), dtype=torch.float32),
        torch.tensor(latents(rng, n, v)),
        torch.tensor(rng.integers(0, num_classes, n)),
    )


class FakeViews(torch.utils.data.Dataset):
    """A flat (object, view) dataset in memory, with the IEBenchViews attributes the cache uses."""

    def __init__(
        self, root: Path, n: int = 5, v: int = 3, size: int = 8, split: str = "train", seed: int = 0
    ):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, v, 3, size, size, generator=g)
        self.lat = torch.rand(n, v, 7, generator=g, dtype=torch.float64)
        self.labels = torch.arange(n) % 2
        self.root, self.split, self.image_size, self.normalize = Path(root), split, size, True
        self.num_objects, self.views_per_object, self.classes = n, v, ("a", "b")

    def __len__(self) -> int:
        return self.num_objects * self.views_per_object

    def __getitem__(self, idx: int) -> dict:
        i, k = divmod(idx, self.views_per_object)
        return {
            "image": self.images[i, k],
            "latent": self.lat[i, k].float(),
            "label": self.labels[i],
            "object": torch.tensor(i),
            "view": torch.tensor(k),
        }


class CountingNet(nn.Module):
    """Conv + BatchNorm + pool, counting its forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.feat_dim = 4
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)
