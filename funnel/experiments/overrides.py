"""Per-arm serving overrides: what an experiment arm may change on the request path, validated.

An arm's ``overrides`` (the opaque dict of :class:`~funnel.experiments.assignment.Arm`) is a JSON
object with three optional keys. Two are applied per request by
:meth:`funnel.ranking.serving.RankingServer.recommend`:

* ``head_weights``: ranker head -> weight (heads :data:`~funnel.ranking.ranker.HEADS`). The score
  is ``Σ w_h · P(h)`` with these weights replacing the fitted ones for the heads named; the other
  heads keep theirs. A head the served model did not train has no effect.
* ``rerank``: re-ranking settings of :class:`~funnel.rerank.config.RerankConfig` replaced for the
  arm, one of :data:`RERANK_KEYS` (exploration rates, MMR λ, freshness boost, diversity caps).

The third, ``model_version``, names a registered model version that serves the arm instead of
the LIVE one: here it is only checked to be a version name; that the version exists, was not
rejected by the gate and loads is checked when the experiment starts, and the API worker holds
its pipeline beside the live one while the experiment runs (:mod:`funnel.api.arm_models`).

The weights and re-ranking settings act on the ranking pipeline (retrieval, ranker, re-ranker)
of the version that serves the arm. A bundle with a baseline model only serves every arm alike;
the response still names the arm.

Example:
    >>> o = ArmOverrides.from_dict({"head_weights": {"like": 2}, "rerank": {"explore_rate": 0.0}})
    >>> o.weights({"engage": 1.0, "like": 0.5})
    {'engage': 1.0, 'like': 2.0}
    >>> o.rerank_config(RerankConfig()).explore_rate
    0.0
    >>> ArmOverrides.from_dict({"model_version": "20260101-000000.000-abc123"}).to_dict()
    {'model_version': '20260101-000000.000-abc123'}
    >>> ArmOverrides.from_dict({"rerank": {"mmr_lambda": 1.5}}, "arms[1].overrides")
    Traceback (most recent call last):
    ...
    funnel.core.errors.ValidationError: arms[1].overrides.rerank.mmr_lambda: must be a number in [0, 1], ...
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from funnel.core.errors import ConfigError, ValidationError
from funnel.ranking.ranker import HEADS
from funnel.rerank.config import RerankConfig
from funnel.training.registry import check_version_name

MAX_WEIGHT = 1e6
"""Bound on a head weight's magnitude (a larger one is a typo, not a setting)."""


@dataclass(frozen=True)
class RerankKey:
    """One overridable re-ranking setting: integer or real, its range, whether ``null`` (off) is allowed."""

    integer: bool
    low: float
    high: float
    nullable: bool = False


RERANK_KEYS: dict[str, RerankKey] = {
    "explore_rate": RerankKey(False, 0.0, 1.0),
    "explore_rate_cold": RerankKey(False, 0.0, 1.0),
    "mmr_lambda": RerankKey(False, 0.0, 1.0),
    "freshness_boost": RerankKey(False, 0.0, 10.0),
    "max_per_creator": RerankKey(True, 1, 1000, nullable=True),
    "max_per_category": RerankKey(True, 1, 1000, nullable=True),
    "max_consecutive": RerankKey(True, 1, 1000, nullable=True),
}
"""The :class:`RerankConfig` fields an arm may set, with their ranges."""
OVERRIDE_KEYS = ("head_weights", "rerank", "model_version")


@dataclass(frozen=True)
class ArmOverrides:
    """Validated overrides of one arm (see the module docstring); empty means "as configured"."""

    head_weights: dict[str, float] = field(default_factory=dict)
    rerank: dict[str, float | int | None] = field(default_factory=dict)
    model_version: str | None = None
    """The registered model version serving the arm (None: the LIVE one)."""

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, where: str = "overrides") -> ArmOverrides:
        """Validate ``raw``; a bad entry raises :class:`ValidationError` naming ``where.<key>``."""
        raw = raw or {}
        if not isinstance(raw, Mapping):
            raise ValidationError("must be an object", field=where)
        for key in raw:
            if key not in OVERRIDE_KEYS:
                raise ValidationError(
                    f"unknown override (allowed: {', '.join(OVERRIDE_KEYS)})", field=f"{where}.{key}"
                )
        weights = _mapping(raw.get("head_weights"), f"{where}.head_weights")
        for head, w in weights.items():
            if head not in HEADS:
                raise ValidationError(
                    f"unknown head (heads: {', '.join(HEADS)})", field=f"{where}.head_weights.{head}"
                )
            if not _real(w) or abs(w) > MAX_WEIGHT:
                message = f"must be a finite number within ±{MAX_WEIGHT:g}, got {w!r}"
                raise ValidationError(message, field=f"{where}.head_weights.{head}")
        rerank = {
            key: _check_rerank(key, value, f"{where}.rerank.{key}")
            for key, value in _mapping(raw.get("rerank"), f"{where}.rerank").items()
        }
        version = raw.get("model_version")
        if version is not None:
            try:
                check_version_name(version)
            except ValidationError as exc:
                raise ValidationError(exc.reason, field=f"{where}.model_version") from None
        out = cls({h: float(w) for h, w in weights.items()}, rerank, version)
        try:  # the steps' own checks (cross-setting rules), as the server will build them
            out.rerank_config(RerankConfig())
        except ConfigError as exc:
            raise ValidationError(exc.message, field=f"{where}.rerank") from exc
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``from_dict(to_dict())`` round-trips (empty parts are left out)."""
        out: dict[str, Any] = {}
        if self.head_weights:
            out["head_weights"] = dict(self.head_weights)
        if self.rerank:
            out["rerank"] = dict(self.rerank)
        if self.model_version is not None:
            out["model_version"] = self.model_version
        return out

    @property
    def empty(self) -> bool:
        """True when the arm serves exactly what the configured pipeline serves."""
        return not self.head_weights and not self.rerank and self.model_version is None

    @property
    def rerank_key(self) -> str:
        """A canonical string of the re-ranking overrides (to cache one re-ranker per arm)."""
        return json.dumps(self.rerank, sort_keys=True)

    def weights(self, fitted: Mapping[str, float]) -> dict[str, float] | None:
        """The ranker's head weights for this arm: ``fitted`` with the arm's on top (None: unchanged)."""
        if not self.head_weights:
            return None
        return {**{h: float(w) for h, w in fitted.items()}, **self.head_weights}

    def rerank_config(self, base: RerankConfig) -> RerankConfig:
        """``base`` with the arm's re-ranking settings (``base`` itself when there are none)."""
        return replace(base, **self.rerank) if self.rerank else base


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValidationError("must be an object", field=where)
    return dict(value)


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_rerank(key: str, value: Any, where: str) -> float | int | None:
    """``value`` as the setting's type (an integer setting given as ``2.0`` is ``2``), else raise."""
    spec = RERANK_KEYS.get(key)
    if spec is None:
        raise ValidationError(f"not overridable (allowed: {', '.join(RERANK_KEYS)})", field=where)
    if value is None and spec.nullable:
        return None
    kind = "an integer" if spec.integer else "a number"
    ok = _real(value) and (not spec.integer or float(value).is_integer()) and spec.low <= value <= spec.high
    if not ok:
        off = " or null" if spec.nullable else ""
        raise ValidationError(
            f"must be {kind} in [{spec.low:g}, {spec.high:g}]{off}, got {value!r}", field=where
        )
    return int(value) if spec.integer else float(value)
