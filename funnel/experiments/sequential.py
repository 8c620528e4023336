"""Always-valid p-values for sequential A/B tests: the normal-mixture mSPRT.

Johari, Koomen, Pekelis & Walsh, "Peeking at A/B tests" (KDD 2017; Operations Research 2022). At
each look the difference estimate ``d = treatment − control`` is approximately ``N(θ, v)`` with
``v`` its (estimated) variance. Mixing the alternative ``θ ~ N(θ₀, τ²)`` gives the likelihood ratio

    Λ = √(v / (v + τ²)) · exp(τ² (d − θ₀)² / (2 v (v + τ²)))

(with ``n`` pairs of observations of variance ``V`` each, ``v = V / n`` and this is the paper's
``Λ_n = √(V / (V + nτ²)) exp(n²τ²(d − θ₀)² / (2V(V + nτ²)))``). The always-valid p-value is the
running minimum ``p_n = min(p_{n−1}, 1 / Λ_n)``, ``p_0 = 1``: rejecting when ``p_n < α`` at *any* look
keeps the false-positive rate at or below ``α`` however often one peeks. ``τ²`` trades power between
small and large effects, not validity; a common choice is the square of a plausible effect size.

Looks are the last axis of every array, so many experiments (or simulations) run at once.

Example:
    >>> p = msprt_proportions([50, 100, 150], [1000, 2000, 3000], [50, 125, 200], [1000, 2000, 3000],
    ...                       tau2=0.01**2)
    >>> np.round(p, 3).tolist()
    [1.0, 0.649, 0.12]
"""

from __future__ import annotations

import numpy as np

from funnel.core.errors import ValidationError


def mixture_log_likelihood_ratio(
    diff: np.ndarray, var: np.ndarray, tau2: float, theta0: float = 0.0
) -> np.ndarray:
    """``log Λ`` of the normal mixture for estimates ``diff`` with variances ``var`` (0 where ``var`` is 0).

    Example:
        >>> float(mixture_log_likelihood_ratio(np.array(0.0), np.array(1.0), tau2=3.0))  # log √(1/4)
        -0.6931471805599453
    """
    if not tau2 > 0 or not np.isfinite(tau2):
        raise ValidationError(f"must be a positive finite number, got {tau2}", field="tau2")
    d, v = np.broadcast_arrays(np.asarray(diff, dtype=float), np.asarray(var, dtype=float))
    if np.any(v < 0):
        raise ValidationError("variances must be >= 0", field="var")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lr = 0.5 * np.log(v / (v + tau2)) + tau2 * (d - theta0) ** 2 / (2 * v * (v + tau2))
    return np.where(v > 0, log_lr, 0.0)


def msprt_p_values(diff: np.ndarray, var: np.ndarray, tau2: float, theta0: float = 0.0) -> np.ndarray:
    """Always-valid p-values at each look (last axis): the running minimum of ``min(1, 1 / Λ)``.

    Example:
        >>> msprt_p_values(np.array([0.0, 3.0, 0.0]), np.array([1.0, 1.0, 1.0]), tau2=1.0).round(3).tolist()
        [1.0, 0.149, 0.149]
    """
    log_lr = mixture_log_likelihood_ratio(diff, var, tau2, theta0)
    p = np.exp(-np.maximum(log_lr, 0.0))
    return np.minimum.accumulate(p, axis=-1)


def msprt_proportions(
    successes_a: np.ndarray, n_a: np.ndarray, successes_b: np.ndarray, n_b: np.ndarray, *, tau2: float,
    theta0: float = 0.0,
) -> np.ndarray:  # fmt: skip
    """Always-valid p-values for ``p_b − p_a`` from *cumulative* counts at each look (last axis).

    The variance at a look is ``p̂_a(1 − p̂_a)/n_a + p̂_b(1 − p̂_b)/n_b``; ``tau2`` is on the absolute
    scale of the difference (e.g. ``(0.1 · baseline)²`` for effects around 10% relative).
    """
    xa, na, xb, nb = (np.asarray(v, dtype=float) for v in (successes_a, n_a, successes_b, n_b))
    if np.any(na < 1) or np.any(nb < 1):
        raise ValidationError("every look needs at least 1 unit per arm", field="n")
    if np.any(xa < 0) or np.any(xa > na) or np.any(xb < 0) or np.any(xb > nb):
        raise ValidationError("successes must be in [0, n]", field="successes")
    pa, pb = xa / na, xb / nb
    return msprt_p_values(pb - pa, pa * (1 - pa) / na + pb * (1 - pb) / nb, tau2, theta0)


def msprt_means(
    n_a: np.ndarray, mean_a: np.ndarray, var_a: np.ndarray, n_b: np.ndarray, mean_b: np.ndarray,
    var_b: np.ndarray, *, tau2: float, theta0: float = 0.0,
) -> np.ndarray:  # fmt: skip
    """Always-valid p-values for ``mean_b − mean_a`` from cumulative summary statistics at each look.

    ``var_*`` are the per-unit sample variances; the difference's variance is ``var_a/n_a + var_b/n_b``.
    """
    na, nb = np.asarray(n_a, dtype=float), np.asarray(n_b, dtype=float)
    if np.any(na < 2) or np.any(nb < 2):
        raise ValidationError("every look needs at least 2 units per arm", field="n")
    diff = np.asarray(mean_b, dtype=float) - np.asarray(mean_a, dtype=float)
    return msprt_p_values(diff, np.asarray(var_a, dtype=float) / na + np.asarray(var_b, dtype=float) / nb,
                          tau2, theta0)  # fmt: skip
