"""Off-policy evaluation: a target policy's expected reward (e.g. click rate) from logged impressions.

Each logged impression ``i`` has the context ``x_i``, the action ``a_i`` the logging policy showed with
propensity ``μ_i = μ(a_i | x_i) > 0``, the reward ``r_i`` and the target policy's probability
``π_i = π(a_i | x_i)`` of the same action. With importance weights ``w_i = π_i / μ_i``:

* **IPS** ``V = mean(w r)``; unbiased when ``μ`` is right and covers every action ``π`` takes.
* **SNIPS** ``V = Σ w r / Σ w``; a ratio estimator, slightly biased, much lower variance. Its variance is
  the delta method's: ``Var ≈ Σ (w_i (r_i − V))² / (n (n − 1) mean(w)²)``.
* **DR** (doubly robust) ``V = mean(ĝ_i + w_i (r_i − q̂_i))`` with a reward model ``q̂``: ``q̂_i = q̂(x_i, a_i)``
  and ``ĝ_i = Σ_a π(a | x_i) q̂(x_i, a)`` (see :func:`expected_model_reward`). Unbiased if either the
  propensities or the model are right; the better the model, the smaller the variance.

Intervals are normal (CLT) intervals of the per-impression terms: ``V ± z_{1−α/2} · se``.

Example:
    >>> r = np.array([1.0, 0, 1, 0]); mu = np.array([0.5, 0.5, 0.25, 0.25]); pi = np.array([1.0, 0, 1, 0.5])
    >>> ips(r, mu, pi).value, snips(r, mu, pi).value      # w = [2, 0, 4, 2]: 6/4 and 6/8
    (1.5, 0.75)
    >>> doubly_robust(r, mu, pi, np.full(4, 0.5), np.full(4, 0.6)).value   # mean(0.6 + w (r − 0.5))
    1.1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from funnel.core.errors import ValidationError


@dataclass(frozen=True)
class OpeEstimate:
    """An off-policy estimate of the target policy's value.

    Attributes:
        estimator: ``"ips"``, ``"snips"`` or ``"dr"``. value: The estimate. stderr: Its standard error.
        ci: The ``1 − alpha`` normal interval. n: Logged impressions used.
        effective_sample_size: ``(Σ w)² / Σ w²``, how many on-policy samples the weights are worth.
        alpha: Level of the interval.
    """

    estimator: str
    value: float
    stderr: float
    ci: tuple[float, float]
    n: int
    effective_sample_size: float
    alpha: float = 0.05

    def covers(self, value: float) -> bool:
        """True when ``value`` lies inside the interval."""
        return self.ci[0] <= value <= self.ci[1]


def ips(
    rewards: np.ndarray, logging_propensity: np.ndarray, target_propensity: np.ndarray, *, alpha: float = 0.05
) -> OpeEstimate:
    """Inverse propensity scoring: ``mean(w r)`` with ``w = π / μ``."""
    r, w = _weights(rewards, logging_propensity, target_propensity, alpha)
    return _clt("ips", w * r, w, alpha)


def snips(
    rewards: np.ndarray, logging_propensity: np.ndarray, target_propensity: np.ndarray, *, alpha: float = 0.05
) -> OpeEstimate:
    """Self-normalised IPS ``Σ w r / Σ w`` with the delta-method (ratio estimator) interval."""
    r, w = _weights(rewards, logging_propensity, target_propensity, alpha)
    n, total = len(r), w.sum()
    if not total > 0:
        raise ValidationError("the target policy gives probability 0 to every logged action", field="target")
    value = float((w * r).sum() / total)
    se = math.sqrt(((w * (r - value)) ** 2).sum() / (n * (n - 1))) / float(w.mean())
    return _estimate("snips", value, se, w, alpha)


def doubly_robust(
    rewards: np.ndarray, logging_propensity: np.ndarray, target_propensity: np.ndarray,
    reward_pred_logged: np.ndarray, reward_pred_target: np.ndarray, *, alpha: float = 0.05,
) -> OpeEstimate:  # fmt: skip
    """Doubly robust ``mean(ĝ + w (r − q̂))``.

    Args:
        rewards: Observed rewards ``r_i``.
        logging_propensity: ``μ(a_i | x_i)`` in ``(0, 1]``.
        target_propensity: ``π(a_i | x_i)`` in ``[0, 1]``.
        reward_pred_logged: The model's prediction ``q̂(x_i, a_i)`` for the logged action.
        reward_pred_target: The model's expected reward under the target policy,
            ``Σ_a π(a | x_i) q̂(x_i, a)`` (:func:`expected_model_reward`).
        alpha: Level of the interval.
    """
    r, w = _weights(rewards, logging_propensity, target_propensity, alpha)
    q = _array(reward_pred_logged, "reward_pred_logged", len(r))
    g = _array(reward_pred_target, "reward_pred_target", len(r))
    return _clt("dr", g + w * (r - q), w, alpha)


def expected_model_reward(target_probs: np.ndarray, reward_pred: np.ndarray) -> np.ndarray:
    """``ĝ_i = Σ_a π(a | x_i) q̂(x_i, a)`` from ``[n, actions]`` matrices of probabilities and predictions.

    Example:
        >>> expected_model_reward(np.array([[0.5, 0.5], [1.0, 0.0]]), np.array([[0.2, 0.4], [0.1, 0.9]]))
        array([0.3, 0.1])
    """
    p, q = np.asarray(target_probs, dtype=float), np.asarray(reward_pred, dtype=float)
    if p.ndim != 2 or p.shape != q.shape:
        raise ValidationError(
            f"need equal [n, actions] matrices, got {p.shape} and {q.shape}", field="reward_pred"
        )
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0):
        raise ValidationError("each row must be a probability distribution", field="target_probs")
    return (p * q).sum(axis=1)


def _clt(name: str, terms: np.ndarray, w: np.ndarray, alpha: float) -> OpeEstimate:
    se = float(terms.std(ddof=1)) / math.sqrt(len(terms))
    return _estimate(name, float(terms.mean()), se, w, alpha)


def _estimate(name: str, value: float, se: float, w: np.ndarray, alpha: float) -> OpeEstimate:
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    sq = float((w**2).sum())
    ess = float(w.sum()) ** 2 / sq if sq > 0 else 0.0
    return OpeEstimate(name, value, se, (value - half, value + half), len(w), ess, alpha)


def _weights(
    rewards: np.ndarray, logging_propensity: np.ndarray, target_propensity: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < alpha < 1:
        raise ValidationError(f"must be in (0, 1), got {alpha}", field="alpha")
    r = _array(rewards, "rewards")
    mu = _array(logging_propensity, "logging_propensity", len(r))
    pi = _array(target_propensity, "target_propensity", len(r))
    if np.any(mu <= 0) or np.any(mu > 1):
        raise ValidationError("must be in (0, 1]", field="logging_propensity")
    if np.any(pi < 0) or np.any(pi > 1):
        raise ValidationError("must be in [0, 1]", field="target_propensity")
    return r, pi / mu


def _array(x: np.ndarray, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1 or len(arr) < 2:
        raise ValidationError("need a 1-d array of at least 2 values", field=name)
    if n is not None and len(arr) != n:
        raise ValidationError(f"length {len(arr)}, expected {n} (one per logged impression)", field=name)
    if not np.all(np.isfinite(arr)):
        raise ValidationError("must be finite", field=name)
    return arr
