"""The PyTorch side of ``two_tower``: the towers, training examples and the training loop.

Torch stays inside this module: callers pass NumPy arrays and get NumPy arrays back.

* Item tower: id embedding (zeroed for items never trained on, and dropped at random during
  training so the content path alone is meaningful) + a projection of the frozen content vector +
  category and creator embeddings → MLP → unit vector.
* User tower: country / age-bucket / device embeddings + the recency-ordered mean of the recent
  items' vectors (the shared item tower) → MLP → unit vector.
* Loss: in-batch sampled softmax over ``u·v / temperature - logq_weight * log p(item)`` with
  ``p`` the item's share of training positives (the logQ correction), accidental hits masked.

Example:
    >>> import numpy as np
    >>> ex = training_examples(np.array([0, 0, 1, 0]), np.array([5, 6, 5, 5]), np.array([1, 2, 3, 4]), 2)
    >>> ex.target.tolist(), ex.history.tolist()   # (0, 5) repeated: only its first event counts
    ([5, 6, 5], [[-1, -1], [5, -1], [-1, -1]])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class TowerConfig:
    """Sizes of the two towers (vocabulary sizes exclude the reserved ``0`` = unknown code)."""

    n_items: int
    content_dim: int
    n_categories: int
    n_creators: int
    n_segments: tuple[int, ...]
    dim: int = 64
    hidden: int = 128
    id_dim: int = 32
    feat_dim: int = 16

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        out = asdict(self)
        out["n_segments"] = list(self.n_segments)
        return out


@dataclass
class Examples:
    """Training examples, one per first positive (user, item): segment codes, history, target."""

    user: np.ndarray
    history: np.ndarray
    target: np.ndarray


def training_examples(user: np.ndarray, item: np.ndarray, ts: np.ndarray, max_history: int) -> Examples:
    """Per user in time order, each first (user, item) event with the previous items newest first."""
    order = np.lexsort((ts, user))
    u, i = np.asarray(user)[order].astype(np.int64), np.asarray(item)[order].astype(np.int64)
    _, first = np.unique(u * (int(i.max(initial=0)) + 1) + i, return_index=True)
    keep = np.zeros(len(u), bool)
    keep[first] = True
    u, i = u[keep], i[keep]
    start = np.searchsorted(u, u, side="left")
    idx = np.arange(len(u))[:, None] - 1 - np.arange(max_history)[None, :]
    hist = np.where(idx >= start[:, None], i[np.maximum(idx, 0)], -1)
    return Examples(u, hist.reshape(len(u), max_history), i)


class TwoTowerNet(nn.Module):
    """User and item towers producing unit vectors in a shared ``dim``-dimensional space."""

    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.item_id = nn.Embedding(cfg.n_items, cfg.id_dim)
        nn.init.normal_(self.item_id.weight, std=0.05)
        self.content = nn.Linear(cfg.content_dim, cfg.hidden)
        self.category = nn.Embedding(cfg.n_categories + 1, cfg.feat_dim, padding_idx=0)
        self.creator = nn.Embedding(cfg.n_creators + 1, cfg.feat_dim, padding_idx=0)
        width = cfg.id_dim + cfg.hidden + 2 * cfg.feat_dim
        self.item_mlp = nn.Sequential(
            nn.ReLU(), nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.dim)
        )
        self.segments = nn.ModuleList(
            nn.Embedding(n + 1, cfg.feat_dim, padding_idx=0) for n in cfg.n_segments
        )
        width = cfg.feat_dim * len(cfg.n_segments) + cfg.dim
        self.user_mlp = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.dim))

    def items(
        self,
        ids: torch.Tensor,
        content: torch.Tensor,
        cats: torch.Tensor,
        creator: torch.Tensor,
        keep: torch.Tensor,
    ) -> torch.Tensor:
        """Item vectors; ``keep`` (0/1 per item) scales the id embedding (0 = content path alone)."""
        parts = [
            self.item_id(ids) * keep[:, None],
            self.content(content),
            self.category(cats).sum(dim=1),
            self.creator(creator),
        ]
        return nn.functional.normalize(self.item_mlp(torch.cat(parts, dim=1)), dim=1)

    def users(self, segments: torch.Tensor, hist_vecs: torch.Tensor, hist_mask: torch.Tensor) -> torch.Tensor:
        """User vectors from segment codes ``[n, s]`` and recent item vectors ``[n, L, dim]`` (mean)."""
        w = hist_mask.float()
        pooled = (hist_vecs * w[:, :, None]).sum(dim=1) / w.sum(dim=1, keepdim=True).clamp(min=1.0)
        parts = [emb(segments[:, j]) for j, emb in enumerate(self.segments)] + [pooled]
        return nn.functional.normalize(self.user_mlp(torch.cat(parts, dim=1)), dim=1)


@dataclass
class ItemFeatures:
    """Per-item inputs of the item tower as tensors (content vectors are frozen)."""

    content: torch.Tensor
    cats: torch.Tensor
    creator: torch.Tensor

    @classmethod
    def from_numpy(cls, content: np.ndarray, cats: np.ndarray, creator: np.ndarray) -> ItemFeatures:
        """Wrap NumPy arrays (``float32 [n, c]``, ``int64 [n, 2]``, ``int64 [n]``)."""
        return cls(
            torch.from_numpy(np.ascontiguousarray(content, np.float32)),
            torch.from_numpy(np.ascontiguousarray(cats, np.int64)),
            torch.from_numpy(np.ascontiguousarray(creator, np.int64)),
        )


def item_vectors(net: TwoTowerNet, feats: ItemFeatures, ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``float32 [len(ids), dim]`` item vectors (no gradient); ``keep`` = 0 drops the id embedding."""
    out = []
    with torch.inference_mode():
        for lo in range(0, len(ids), 8192):
            t = torch.from_numpy(np.asarray(ids[lo : lo + 8192], np.int64))
            k = torch.from_numpy(np.asarray(keep[lo : lo + 8192], np.float32))
            safe = t.clamp(max=net.cfg.n_items - 1)
            out.append(net.items(safe, feats.content[t], feats.cats[t], feats.creator[t], k).numpy())
    return np.concatenate(out) if out else np.zeros((0, net.cfg.dim), np.float32)


def train(
    net: TwoTowerNet,
    feats: ItemFeatures,
    ex: Examples,
    segments: np.ndarray,
    logq: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    temperature: float,
    id_dropout: float,
    seed: int,
    history_grad: bool = False,
) -> list[float]:
    """Train in place with in-batch sampled softmax (logQ-corrected); returns the mean loss per epoch.

    ``history_grad``: back-propagate through the item tower for the pooled history items too
    (about 2.5x slower; without it the history vectors are the current tower's, forward only).
    """
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    seg, hist = torch.from_numpy(segments[ex.user].astype(np.int64)), torch.from_numpy(ex.history)
    target, lq = torch.from_numpy(ex.target), torch.from_numpy(logq.astype(np.float32))
    losses = []
    net.train()
    for _ in range(epochs):
        total, steps = 0.0, 0
        for b in np.array_split(rng.permutation(len(target)), max(1, len(target) // batch_size)):
            bi = torch.from_numpy(b)
            h, tgt = hist[bi], target[bi]
            mask = h >= 0
            needed, inv = torch.unique(torch.cat([tgt, h[mask]]), return_inverse=True)
            keep = (torch.rand(len(needed), generator=gen) >= id_dropout).float()
            if history_grad:
                vecs = net.items(
                    needed, feats.content[needed], feats.cats[needed], feats.creator[needed], keep
                )
                pos = vecs[inv[: len(tgt)]]
            else:  # targets with gradient; history items through the same tower, forward only
                tu, t_inv = torch.unique(tgt, return_inverse=True)
                kt = keep[torch.searchsorted(needed, tu)]
                pos = net.items(tu, feats.content[tu], feats.cats[tu], feats.creator[tu], kt)[t_inv]
                with torch.no_grad():
                    vecs = net.items(
                        needed, feats.content[needed], feats.cats[needed], feats.creator[needed], keep
                    )
            hv = torch.zeros(*h.shape, vecs.shape[1])
            hv[mask] = vecs[inv[len(tgt) :]]
            u = net.users(seg[bi], hv, mask)
            logits = u @ pos.T / temperature - lq[tgt][None, :]
            clash = (tgt[:, None] == tgt[None, :]) & ~torch.eye(len(tgt), dtype=torch.bool)
            logits = logits.masked_fill(clash, float("-inf"))
            loss = nn.functional.cross_entropy(logits, torch.arange(len(tgt)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
    net.eval()
    return losses


def state_arrays(net: TwoTowerNet) -> dict[str, np.ndarray]:
    """The ``state_dict`` as NumPy arrays (keys prefixed ``w.``), for ``save_artifact``."""
    return {f"w.{k}": v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def load_state_arrays(net: TwoTowerNet, arrays: dict[str, np.ndarray]) -> TwoTowerNet:
    """Load arrays written by :func:`state_arrays` into ``net`` (strict) and set eval mode."""
    state = {k[2:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("w.")}
    net.load_state_dict(state, strict=True)
    return net.eval()
