"""Experiment configuration and deterministic user-to-arm assignment.

A user's place in an experiment comes from two independent 64-bit numbers read from one BLAKE2b
digest of ``salt``, a NUL byte and the user id (stable across processes and machines, unlike
Python's ``hash``):

* the *ramp bucket* ``r ∈ [0, 1)``: the user is in the experiment iff ``r < ramp / 100``;
* the *arm bucket* ``u ∈ [0, 1)``: the arm is the first whose cumulative weight share exceeds ``u``.

The arm bucket does not depend on the ramp, so ramping up only *adds* users: whoever was in an arm
stays in that arm. Changing the weights or the salt, by contrast, reshuffles users (a new salt is
how a new experiment gets an independent split).

Example:
    >>> exp = Experiment.from_dict({
    ...     "name": "ranker-v2", "salt": "2024-06-ranker-v2", "ramp": 100,
    ...     "arms": [{"name": "control", "weight": 1},
    ...              {"name": "v2", "weight": 1, "overrides": {"model": "v2"}}],
    ... })
    >>> exp.arm_names
    ('control', 'v2')
    >>> assign(exp, "user-42") in {"control", "v2"}
    True
    >>> assign(exp.with_ramp(0), "user-42") is None
    True
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from funnel.core.errors import ValidationError

STATUSES = ("started", "stopped")
_SCALE = float(2**64)


@dataclass(frozen=True)
class Arm:
    """One arm of an experiment.

    Attributes:
        name: Unique, non-empty arm name.
        weight: Positive allocation weight (shares are ``weight / Σ weights``).
        overrides: Settings this arm changes (e.g. ranker weights); opaque to assignment.
    """

    name: str
    weight: float = 1.0
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """An experiment: arms with allocation weights, a salt, a status and a ramp.

    The first arm is the control arm of the analysis. Construction validates every field and raises
    :class:`~funnel.core.errors.ValidationError` naming it.

    Attributes:
        name: Non-empty experiment name.
        salt: Non-empty string hashed with the user id; a new salt gives an independent split.
        arms: At least two arms with unique names.
        status: ``"started"`` (users are assigned) or ``"stopped"`` (nobody is).
        ramp: Percentage ``0..100`` of users in the experiment.
    """

    name: str
    salt: str
    arms: tuple[Arm, ...]
    status: str = "started"
    ramp: float = 100.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", tuple(self.arms))
        for key in ("name", "salt"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ValidationError("must be a non-empty string", field=key)
        if len(self.arms) < 2:
            raise ValidationError(f"need at least 2 arms, got {len(self.arms)}", field="arms")
        seen: set[str] = set()
        for i, arm in enumerate(self.arms):
            _check_arm(arm, f"arms[{i}]", seen)
        if self.status not in STATUSES:
            raise ValidationError(f"must be one of {STATUSES}, got {self.status!r}", field="status")
        if not _is_number(self.ramp) or not 0 <= self.ramp <= 100:
            raise ValidationError(f"must be a number in [0, 100], got {self.ramp!r}", field="ramp")

    @property
    def arm_names(self) -> tuple[str, ...]:
        """The arm names in order (control first)."""
        return tuple(arm.name for arm in self.arms)

    @property
    def weights(self) -> tuple[float, ...]:
        """The allocation shares of the arms, summing to 1."""
        total = math.fsum(arm.weight for arm in self.arms)
        return tuple(arm.weight / total for arm in self.arms)

    def with_ramp(self, ramp: float) -> Experiment:
        """A copy with another ramp percentage (users already in an arm keep it when ramping up)."""
        return replace(self, ramp=ramp)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> Experiment:
        """Build an experiment from a dict (e.g. parsed JSON); unknown or missing keys name the field.

        Example:
            >>> Experiment.from_dict({"name": "x", "salt": "s", "arms": [{"name": "a"}]})
            Traceback (most recent call last):
            ...
            funnel.core.errors.ValidationError: arms: need at least 2 arms, got 1
        """
        if not isinstance(config, Mapping):
            raise ValidationError("must be an object", field="experiment")
        _check_keys(config, {"name", "salt", "arms", "status", "ramp"}, {"name", "salt", "arms"}, "")
        raw_arms = config["arms"]
        if not isinstance(raw_arms, Sequence) or isinstance(raw_arms, str):
            raise ValidationError("must be a list of arms", field="arms")
        arms = []
        for i, raw in enumerate(raw_arms):
            where = f"arms[{i}]"
            if not isinstance(raw, Mapping):
                raise ValidationError("must be an object", field=where)
            _check_keys(raw, {"name", "weight", "overrides"}, {"name"}, where + ".")
            overrides = raw.get("overrides", {})
            if not isinstance(overrides, Mapping):
                raise ValidationError("must be an object", field=where + ".overrides")
            arms.append(Arm(raw["name"], raw.get("weight", 1.0), dict(overrides)))
        return cls(
            name=config["name"], salt=config["salt"], arms=tuple(arms),
            status=config.get("status", "started"), ramp=config.get("ramp", 100.0),
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> Experiment:
        """Build an experiment from a JSON document (see :meth:`from_dict`)."""
        try:
            config = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValidationError(f"not valid JSON: {err}", field="experiment") from err
        return cls.from_dict(config)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready config that :meth:`from_dict` reads back."""
        arms = [{"name": a.name, "weight": a.weight, "overrides": dict(a.overrides)} for a in self.arms]
        return {"name": self.name, "salt": self.salt, "arms": arms, "status": self.status, "ramp": self.ramp}


def buckets(salt: str, user_id: str) -> tuple[float, float]:
    """The user's ``(ramp bucket, arm bucket)``, two independent uniforms in ``[0, 1)``.

    Example:
        >>> buckets("salt", "u1") == buckets("salt", "u1") != buckets("salt", "u2")
        True
    """
    digest = hashlib.blake2b(f"{salt}\x00{user_id}".encode(), digest_size=16).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE, int.from_bytes(digest[8:], "big") / _SCALE


def assign(experiment: Experiment, user_id: str) -> str | None:
    """The arm name of ``user_id``, or ``None`` when the user is outside the ramp or it is stopped.

    Example:
        >>> exp = Experiment("e", "salt-1", (Arm("control", 9), Arm("treatment", 1)), ramp=50)
        >>> [assign(exp, f"u{i}") for i in range(8, 12)]
        [None, 'treatment', 'control', None]
    """
    if experiment.status != "started":
        return None
    ramp_bucket, arm_bucket = buckets(experiment.salt, str(user_id))
    if ramp_bucket >= experiment.ramp / 100.0:
        return None
    cumulative = 0.0
    for arm, share in zip(experiment.arms, experiment.weights, strict=True):
        cumulative += share
        if arm_bucket < cumulative:
            return arm.name
    return experiment.arms[-1].name  # rounding: cumulative may end a hair below 1


def _check_arm(arm: Any, where: str, seen: set[str]) -> None:
    if not isinstance(arm, Arm):
        raise ValidationError("must be an Arm", field=where)
    if not isinstance(arm.name, str) or not arm.name:
        raise ValidationError("must be a non-empty string", field=where + ".name")
    if arm.name in seen:
        raise ValidationError(f"duplicate arm name {arm.name!r}", field=where + ".name")
    seen.add(arm.name)
    if not _is_number(arm.weight) or not arm.weight > 0 or not math.isfinite(arm.weight):
        message = f"must be a positive finite number, got {arm.weight!r}"
        raise ValidationError(message, field=where + ".weight")
    if not isinstance(arm.overrides, dict) or not all(isinstance(k, str) for k in arm.overrides):
        raise ValidationError("must be a dict with string keys", field=where + ".overrides")


def _check_keys(config: Mapping[str, Any], allowed: set[str], required: set[str], prefix: str) -> None:
    for key in config:
        if key not in allowed:
            message = f"unknown key (allowed: {', '.join(sorted(allowed))})"
            raise ValidationError(message, field=prefix + str(key))
    for key in sorted(required - set(config)):
        raise ValidationError("is required", field=prefix + key)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
