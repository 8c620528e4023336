"""Scenarios and the simulated world's size: what one closed-loop run is asked to do, validated.

A :class:`Scenario` is what a team would vary (exploration rate, MMR λ, ranker head weights,
retraining cadence, new-item arrival rate, share of cold users, the users' fatigue and patience);
:class:`SimConfig` is the world (users, days, seed, catalogue size, history, visits per day) and
the engine's training recipe. Scenarios come from JSON: one object, a list, or
``{"scenarios": [...]}``; every key is checked and a bad one raises ``ConfigError`` naming it.

Example:
    >>> s = Scenario.from_dict({"name": "explore-5", "explore_rate": 0.05})
    >>> s.explore_rate, s.retrain_days, s.overrides().rerank["explore_rate"]
    (0.05, 7, 0.05)
    >>> Scenario.from_dict({"explore_rate": 2})
    Traceback (most recent call last):
    ...
    funnel.core.errors.ConfigError: scenario 'default': explore_rate must be in [0, 1], got 2
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from funnel.core.errors import ConfigError, ValidationError
from funnel.experiments.overrides import ArmOverrides
from funnel.rerank.config import RerankConfig

_DEFAULTS = RerankConfig()
_UNIT = ("explore_rate", "explore_rate_cold", "mmr_lambda", "cold_user_share", "fatigue", "leave_rate")
_UNIT += ("daily_churn",)


@dataclass(frozen=True)
class Scenario:
    """One policy and population setting of a run (see the module docstring).

    Serving (applied per request as experiment-arm overrides, :mod:`funnel.experiments.overrides`):
    ``explore_rate`` / ``explore_rate_cold`` (exploration slots for warm / cold users), ``mmr_lambda``
    (diversity), ``head_weights`` (ranker head -> weight; empty = as trained).
    Training: ``retrain_days`` (the worker's cadence in simulated days; 0 = never retrain) and
    ``gate`` (``True``: a retrain goes live only if the promotion gate passes it, as with the
    worker; ``False``: it goes live anyway, like ``funnel train --force`` — the gate still runs
    and its verdict is recorded in the run's ``retrains``).
    World: ``new_items_per_day`` (items published during the run), ``cold_user_share`` (share of
    the population that arrives during the run, with no history).
    Behaviour: ``fatigue`` (a shown item's click probability is multiplied by ``1 - fatigue`` per
    earlier impression of it to the same user), ``leave_rate`` (chance a user leaves for good after
    a page without a click), ``daily_churn`` (chance per day an active user leaves anyway).
    """

    name: str = "default"
    explore_rate: float = _DEFAULTS.explore_rate
    explore_rate_cold: float = _DEFAULTS.explore_rate_cold
    mmr_lambda: float = _DEFAULTS.mmr_lambda
    head_weights: dict[str, float] = field(default_factory=dict)
    retrain_days: int = 7
    new_items_per_day: float = 10.0
    cold_user_share: float = 0.1
    fatigue: float = 0.3
    leave_rate: float = 0.01
    daily_churn: float = 0.002
    gate: bool = True

    def __post_init__(self) -> None:
        where = f"scenario {self.name!r}"
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ConfigError(f"{where}: name must be a non-empty string without '/'")
        for key in _UNIT:
            value = getattr(self, key)
            if not _real(value) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{where}: {key} must be in [0, 1], got {value!r}")
        if not isinstance(self.gate, bool):
            raise ConfigError(f"{where}: gate must be true or false, got {self.gate!r}")
        if (
            not isinstance(self.retrain_days, int)
            or isinstance(self.retrain_days, bool)
            or self.retrain_days < 0
        ):
            raise ConfigError(f"{where}: retrain_days must be an integer >= 0, got {self.retrain_days!r}")
        if not _real(self.new_items_per_day) or not 0 <= self.new_items_per_day <= 10_000:
            raise ConfigError(
                f"{where}: new_items_per_day must be in [0, 10000], got {self.new_items_per_day!r}"
            )
        try:
            self.overrides()
        except ValidationError as exc:
            raise ConfigError(f"{where}: {exc}") from exc

    def overrides(self) -> ArmOverrides:
        """The serving settings as experiment-arm overrides (validated like an arm's)."""
        rerank = {
            "explore_rate": self.explore_rate,
            "explore_rate_cold": self.explore_rate_cold,
            "mmr_lambda": self.mmr_lambda,
        }
        raw: dict[str, Any] = {"rerank": rerank}
        if self.head_weights:
            raw["head_weights"] = dict(self.head_weights)
        return ArmOverrides.from_dict(raw, "head_weights" if self.head_weights else "overrides")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form; ``from_dict(to_dict())`` round-trips."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Scenario:
        """Build from a JSON object; unknown keys and wrong types raise ``ConfigError``."""
        if not isinstance(data, dict):
            raise ConfigError(f"a scenario must be a JSON object, got {type(data).__name__}")
        name = data.get("name", "default")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"scenario {name!r}: unknown key(s) {unknown}")
        if "head_weights" in data and not isinstance(data["head_weights"], dict):
            raise ConfigError(f"scenario {name!r}: head_weights must be an object of head -> weight")
        return cls(**data)


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load_scenarios(path: str | Path) -> list[Scenario]:
    """Scenarios from a JSON file (one object, a list, or ``{"scenarios": [...]}``); names unique."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"scenario file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"scenario file {path} is not valid JSON: {exc}") from exc
    if isinstance(raw, dict) and "scenarios" in raw:
        raw = raw["scenarios"]
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ConfigError(f"scenario file {path} holds no scenario")
    scenarios = [Scenario.from_dict(item) for item in items]
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ConfigError(f"scenario file {path}: scenario names must be unique, got {names}")
    return scenarios


@dataclass(frozen=True)
class SimConfig:
    """The simulated world and the engine's recipe (see the module docstring).

    ``users`` (population, arrivals included), ``days`` (simulated days), ``seed``; ``n_items``
    (catalogue at the start; ``Scenario.new_items_per_day`` more arrive), ``history_days`` and
    ``history_per_user`` (the interactions the first model is trained on, sampled by the synthetic
    generator's logging policy before day 0), ``visits_per_day`` (mean pages a user asks for per
    day, scaled by the user's activity), ``page_size``, ``batch_size`` (users per batched request),
    ``total`` (candidates retrieved per request), ``n_estimators`` (trees per ranker head),
    ``max_label_users`` (users sampled for the ranker's training rows), ``negatives`` (sampled
    negatives per user in them). The recipe is smaller than the engine's defaults (1000
    candidates, 100 negatives) so a retrain costs seconds, not minutes: see docs/simulation.md.
    """

    users: int = 10_000
    days: int = 30
    seed: int = 0
    n_items: int = 2_000
    history_days: int = 28
    history_per_user: float = 15.0
    visits_per_day: float = 0.2
    page_size: int = 10
    batch_size: int = 256
    total: int = 150
    n_estimators: int = 40
    max_label_users: int = 1_000
    negatives: int = 20

    def __post_init__(self) -> None:
        limits = {
            "users": (10, 10_000_000),
            "days": (1, 3650),
            "n_items": (50, 1_000_000),
            "history_days": (1, 3650),
            "page_size": (1, 100),
            "batch_size": (1, 100_000),
            "total": (10, 10_000),
            "n_estimators": (1, 10_000),
            "max_label_users": (10, 10_000_000),
            "negatives": (1, 10_000),
        }
        for key, (low, high) in limits.items():
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"simulation: {key} must be an integer in [{low}, {high}], got {value!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"simulation: seed must be an integer >= 0, got {self.seed!r}")
        for key in ("history_per_user", "visits_per_day"):
            value = getattr(self, key)
            if not _real(value) or not 0 < value <= 1000:
                raise ConfigError(f"simulation: {key} must be in (0, 1000], got {value!r}")

    def ranking(self) -> dict[str, Any]:
        """The ``ranking`` arguments of :meth:`funnel.engine.Engine.train` for this world."""
        return {
            "total": self.total,
            "ranker": {"n_estimators": self.n_estimators},
            "max_label_users": self.max_label_users,
            "negatives": self.negatives,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)
