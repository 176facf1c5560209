"""Mini-batch k-means in torch, for clustering millions of feature frames into HuBERT targets.

`fit_kmeans` standardises the frames (mean and std of the fitting frames, kept with the centroids), seeds the
centroids with greedy k-means++ on a subsample, then runs Sculley's mini-batch updates (web-scale k-means, 2010): each
centroid moves towards the mean of its frames in the batch with a learning rate of 1/(frames it has ever been given),
so it is the running mean of everything assigned to it. A cluster left empty for a whole pass is re-seeded at a frame
far from its centroid, drawn with probability proportional to the squared distance. Fitting stops after `max_iter`
passes or when a pass moves the centroids by less than `tol` (mean squared shift per standardised dimension).

Distances are `|c|^2 - 2 x.c` from one matmul per chunk of frames, never an (N, K, D) tensor. Everything random
comes from the seed, and every sum whose rounding could depend on the thread count (moments, inertia, shifts) runs in
float64 numpy, so the same seed gives the same labels, bit for bit, on a given machine however many threads torch
uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

_CHUNK_SCORES = 1 << 22  # (frames x clusters) scores per chunk: 16 MiB of float32


@dataclass
class KMeans:
    """Fitted centroids, in the standardised space of the frames they were fitted on."""

    centroids: torch.Tensor
    """(K, D) float32, standardised units."""
    mean: torch.Tensor
    """(D,) float32: subtracted from frames before they are compared with the centroids."""
    std: torch.Tensor
    """(D,) float32: frames are divided by it after the mean is subtracted."""
    inertia: float = math.nan
    """Mean squared distance of the fitting frames to their nearest centroid (standardised units)."""
    passes: int = 0
    """Passes over the fitting frames that the fit took."""

    @property
    def clusters(self) -> int:
        return self.centroids.shape[0]

    def standardise(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        frames = torch.as_tensor(frames).to(self.centroids.device, torch.float32)
        return (frames - self.mean) / self.std

    @torch.no_grad()
    def assign(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The nearest centroid of each frame (squared euclidean distance after standardising).

        Args:
            frames: (N, D), raw (not standardised) features.

        Returns:
            (N,) int64 labels on the CPU; ties go to the lower cluster index.
        """
        labels, _ = self.nearest(frames)
        return labels

    @torch.no_grad()
    def nearest(self, frames: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels, squared distances) of raw frames, both (N,) on the CPU."""
        x = self.standardise(frames)
        return _nearest(x, self.centroids)

    def save(self, path: Path) -> None:
        """Write the centroids, mean and std as safetensors."""
        tensors = {"centroids": self.centroids, "mean": self.mean, "std": self.std}
        save_file({k: v.detach().cpu().float().contiguous() for k, v in tensors.items()}, str(path))

    @classmethod
    def load(cls, path: Path) -> KMeans:
        tensors = load_file(str(path))
        return cls(tensors["centroids"], tensors["mean"], tensors["std"])


@torch.no_grad()
def fit_kmeans(
    frames: torch.Tensor | np.ndarray,
    clusters: int,
    seed: int = 0,
    batch_frames: int = 10_000,
    max_iter: int = 100,
    tol: float = 1e-4,
    init_frames: int | None = None,
    device: torch.device | str | None = None,
) -> KMeans:
    """Fit `clusters` centroids to `frames` with mini-batch k-means.

    Args:
        frames: (N, D) features, N >= clusters.
        clusters: K.
        seed: seeds the k-means++ subsample and picks, the mini-batch order and re-seeding.
        batch_frames: frames per mini-batch update.
        max_iter: passes over the frames at most.
        tol: stop once a pass moves the centroids by less than this (mean squared shift per standardised dimension).
        init_frames: size of the subsample k-means++ seeds from (default: 3 batches, at least 10 frames per cluster).
        device: where to compute (default: where `frames` are).

    Returns:
        The fitted `KMeans`, with the mean squared distance of `frames` to their centroids as `inertia`.

    Raises:
        ValueError: fewer frames than clusters, or frames that are not a non-empty 2-D array.
    """
    frames = torch.as_tensor(frames)
    if frames.ndim != 2 or frames.shape[1] == 0:
        raise ValueError(f"frames must be (N, D) with D > 0, got shape {tuple(frames.shape)}")
    n = frames.shape[0]
    if clusters < 1 or clusters > n:
        raise ValueError(f"asked for {clusters} clusters but got {n} frames")
    device = torch.device(device) if device is not None else frames.device
    mean, std = _moments(frames)
    mean, std = mean.to(device), std.to(device)
    x = (frames.to(device, torch.float32) - mean) / std
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)

    sample_size = min(n, max(init_frames or 3 * batch_frames, 10 * clusters))
    sample = x if sample_size == n else x[_to(np.sort(rng.choice(n, sample_size, replace=False)), device)]
    centroids = _kmeans_plus_plus(sample, clusters, rng)
    counts = torch.zeros(clusters, dtype=torch.float64, device=device)
    passes = 0
    while passes < max_iter:
        passes += 1
        before = centroids.clone()
        hits = torch.zeros(clusters, dtype=torch.int64, device=device)
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_frames):
            batch = x[order[start : start + batch_frames]]
            labels, _ = _nearest(batch, centroids, on_cpu=False)
            added = torch.bincount(labels, minlength=clusters)
            sums = _cluster_sums(batch, labels, added)
            counts += added
            rate = (added / counts.clamp(min=1)).float()[:, None]
            centroids += rate * (sums / added.clamp(min=1)[:, None].float() - centroids)
            hits += added
        empty = (hits == 0).nonzero()[:, 0]
        if len(empty):
            _reseed(x, centroids, counts, empty, max(batch_frames, 4 * len(empty)), rng)
        shift = np.mean(np.square((centroids - before).double().cpu().numpy()))
        if not len(empty) and shift < tol:
            break
    inertia = _inertia(x, centroids)
    return KMeans(centroids.cpu(), mean.cpu(), std.cpu(), inertia, passes)


def _to(indices: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64)).to(device)


def _moments(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std per dimension in float64 numpy (fixed summation order), chunk by chunk to bound memory."""
    n = frames.shape[0]
    step = max(1, (1 << 24) // frames.shape[1])
    total = np.zeros(frames.shape[1])
    for start in range(0, n, step):
        total += frames[start : start + step].double().cpu().numpy().sum(axis=0)
    mean = total / n
    squares = np.zeros(frames.shape[1])
    for start in range(0, n, step):
        squares += np.square(frames[start : start + step].double().cpu().numpy() - mean).sum(axis=0)
    std = np.sqrt(squares / n)
    # A constant dimension carries no distance; dividing by 1 keeps it constant instead of dividing by zero.
    std = np.where(std > 1e-8 * max(1.0, float(np.abs(mean).max())), std, 1.0)
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def _nearest(x: torch.Tensor, centroids: torch.Tensor, on_cpu: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, squared distances) of standardised frames, in chunks that keep the score matrix small."""
    squared = (centroids * centroids).sum(1)
    step = max(1, _CHUNK_SCORES // centroids.shape[0])
    labels, distances = [], []
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        scores = torch.addmm(squared, chunk, centroids.T, alpha=-2.0)  # |c|^2 - 2 x.c: |x|^2 does not change argmin
        best, label = scores.min(1)
        labels.append(label)
        distances.append((best + (chunk * chunk).sum(1)).clamp(min=0))
    labels_t = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64, device=x.device)
    distances_t = torch.cat(distances) if distances else torch.zeros(0, device=x.device)
    if on_cpu:
        return labels_t.cpu(), distances_t.cpu()
    return labels_t, distances_t


def _cluster_sums(x: torch.Tensor, labels: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Per-cluster sums of `x` in a fixed order: a running float64 sum over the frames sorted by label, differenced at
    the clusters' bounds. (index_add_ adds in a racing order on CUDA; a one-hot matmul lets BLAS split the sum
    differently for different thread counts.)"""
    order = torch.sort(labels, stable=True).indices
    running = torch.zeros(len(x) + 1, x.shape[1], dtype=torch.float64, device=x.device)
    running[1:] = torch.cumsum(x[order].double(), dim=0)
    ends = torch.cumsum(sizes, 0)
    return (running[ends] - running[ends - sizes]).float()


def _inertia(x: torch.Tensor, centroids: torch.Tensor) -> float:
    _, distances = _nearest(x, centroids)
    return float(distances.double().numpy().sum() / max(1, len(x)))


def _d2_pick(distances: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct indices drawn with probability proportional to `distances` (uniform when all are 0)."""
    weights = np.asarray(distances, dtype=np.float64)
    positive = int((weights > 0).sum())
    if positive < count:
        weights = weights + (1.0 if positive == 0 else weights[weights > 0].min() * 1e-6)
    return rng.choice(len(weights), size=count, replace=False, p=weights / weights.sum())


def _kmeans_plus_plus(x: torch.Tensor, clusters: int, rng: np.random.Generator) -> torch.Tensor:
    """Greedy k-means++ (Arthur and Vassilvitskii, 2007): each new centroid is the best, by the summed squared
    distance it leaves, of a few frames drawn with probability proportional to their squared distance to the
    centroids so far."""
    n = len(x)
    trials = 2 + int(math.log(clusters))
    centroids = torch.empty(clusters, x.shape[1], device=x.device)
    first = int(rng.integers(n))
    centroids[0] = x[first]
    closest = ((x - x[first]) ** 2).sum(1)
    for k in range(1, clusters):
        weights = closest.double().cpu().numpy()
        total = weights.sum()
        if total > 0:
            cumulative = np.cumsum(weights)
            picks = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1], side="right")
            picks = np.minimum(picks, n - 1)
        else:  # fewer distinct frames than clusters: duplicates are all that is left
            picks = rng.integers(n, size=trials)
        candidates = x[_to(picks, x.device)]
        # (trials, n) squared distances, via the same expansion as assignment
        to_candidates = (
            (candidates * candidates).sum(1)[:, None] - 2.0 * candidates @ x.T + (x * x).sum(1)[None]
        ).clamp(min=0)
        leaves = torch.minimum(closest[None], to_candidates)
        potentials = leaves.double().cpu().numpy().sum(1)
        best = int(np.argmin(potentials))
        centroids[k] = candidates[best]
        closest = leaves[best]
    return centroids


def _reseed(
    x: torch.Tensor,
    centroids: torch.Tensor,
    counts: torch.Tensor,
    empty: torch.Tensor,
    probe_size: int,
    rng: np.random.Generator,
) -> None:
    """Move the centroids of empty clusters onto frames far from their own centroids (drawn from a random probe of
    the frames with probability proportional to the squared distance), with a count of 1 so that they adapt fast."""
    n = len(x)
    probe = rng.choice(n, size=probe_size, replace=False) if probe_size < n else np.arange(n)
    frames = x[_to(probe, x.device)]
    _, distances = _nearest(frames, centroids)
    picks = _d2_pick(distances.double().numpy(), min(len(empty), len(probe)), rng)
    chosen = empty[: len(picks)]
    centroids[chosen] = frames[_to(picks, x.device)]
    counts[chosen] = 1.0
