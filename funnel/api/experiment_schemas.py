"""Bodies of the experiment admin API (``/v1/experiments``): strict and closed like the others.

The spec states each field's rule (name pattern, weight and ramp ranges, the overridable settings
with their ranges); the one rule it cannot state, unique arm names, is a 422 naming ``arms``.
A per-arm ``model_version`` must name a registered version that was not rejected and loads:
checked when the experiment starts (:mod:`funnel.api.arm_models`), a 422 naming
``arms.<i>.overrides.model_version`` otherwise.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from funnel.api.schemas import NOT_BLANK, Closed, _Integral
from funnel.experiments.overrides import MAX_WEIGHT
from funnel.experiments.store import NAME_PATTERN, ExperimentRecord

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""Model version names (:func:`funnel.training.registry.check_version_name`)."""


Name = Annotated[str, Field(pattern=NAME_PATTERN, description="letters, digits, '.', '_', '-'; up to 64")]
ArmName = Annotated[str, Field(min_length=1, max_length=64, pattern=NOT_BLANK, description="not blank")]
Rate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Cap = Annotated[int, Field(ge=1, le=1000), _Integral] | None
Weight = Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)]
Ramp = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False, description="percent of users")]


class HeadWeightsIn(Closed):
    """Ranker head weights replacing the fitted ones (``score = Σ w·P``); heads left out keep theirs."""

    engage: Weight = Field(None)
    like: Weight = Field(None)
    complete: Weight = Field(None)
    dislike: Weight = Field(None)


class RerankIn(Closed):
    """Re-ranking settings of the arm (``null`` for a cap: no cap)."""

    explore_rate: Rate = Field(None)
    explore_rate_cold: Rate = Field(None)
    mmr_lambda: Rate = Field(None)
    freshness_boost: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = Field(None)
    max_per_creator: Cap = Field(None)
    max_per_category: Cap = Field(None)
    max_consecutive: Cap = Field(None)


class OverridesIn(Closed):
    """What the arm changes on the serving path (nothing: the pipeline as configured)."""

    head_weights: HeadWeightsIn = Field(None)
    rerank: RerankIn = Field(None)
    model_version: Annotated[str, Field(pattern=VERSION_PATTERN)] | None = Field(
        None,
        description="a registered model version (`funnel models list`) serving this arm instead of "
        "the live one; it must exist, not be rejected, and load",
    )


class ArmIn(Closed):
    """One arm: its name, allocation weight and overrides. The first arm is the control."""

    name: ArmName
    weight: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] = 1.0
    overrides: OverridesIn = Field(default_factory=OverridesIn)


class ExperimentIn(Closed):
    """A new experiment (started on creation; ``salt`` default: the name; ``ramp`` default 100)."""

    name: Name
    salt: Annotated[str, Field(min_length=1, max_length=256)] = Field(None)
    arms: Annotated[list[ArmIn], Field(min_length=2, max_length=20)]
    ramp: Ramp = 100.0

    @field_validator("arms")
    @classmethod
    def _unique_names(cls, arms: list[ArmIn]) -> list[ArmIn]:
        names = [a.name for a in arms]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"arm names must be unique, {repeated[0]!r} repeats")
        return arms

    def config(self) -> dict[str, Any]:
        """The config :meth:`funnel.experiments.store.ExperimentStore.create` takes."""
        out = self.model_dump(exclude_unset=True, exclude={"arms"})
        out["arms"] = [
            {
                "name": a.name,
                "weight": a.weight,
                "overrides": _overrides(a.overrides),
            }
            for a in self.arms
        ]
        return out


def _overrides(overrides: OverridesIn) -> dict[str, Any]:
    """The stored overrides: what was set (a cap set to null stays: no cap); a null version is none."""
    out = overrides.model_dump(exclude_unset=True)
    if out.get("model_version", 0) is None:
        del out["model_version"]
    return out


class RampIn(Closed):
    """A new ramp: the percentage of users in the experiment (users keep their arm)."""

    ramp: Ramp


class ArmOut(BaseModel):
    """An arm as stored: weight, share of the experiment's users, overrides."""

    name: str
    weight: float
    share: float
    overrides: dict[str, Any]


class RampOut(BaseModel):
    """A ramp change (the first is the start)."""

    at_ms: int
    ramp: float


class ExperimentOut(BaseModel):
    """An experiment: its config, status and history."""

    name: str
    salt: str
    status: Literal["started", "stopped"]
    ramp: float
    arms: list[ArmOut]
    revision: int
    created_ms: int
    stopped_ms: int | None
    ramps: list[RampOut]

    @classmethod
    def of(cls, record: ExperimentRecord) -> ExperimentOut:
        """The response body of ``record``."""
        exp = record.experiment
        arms = [
            ArmOut(name=a.name, weight=a.weight, share=s, overrides=o.to_dict())
            for a, s, o in zip(exp.arms, exp.weights, record.overrides, strict=True)
        ]
        return cls(
            name=exp.name, salt=exp.salt, status=exp.status, ramp=exp.ramp, arms=arms,  # type: ignore[arg-type]
            revision=record.revision, created_ms=record.created_ms, stopped_ms=record.stopped_ms,
            ramps=[RampOut(at_ms=ms, ramp=r) for ms, r in record.ramps],
        )  # fmt: skip


class ExperimentsOut(BaseModel):
    """Every experiment, the running one first."""

    experiments: list[ExperimentOut]


Num = float | None
"""A number, or null where it is undefined (no impressions, too few users)."""


class SrmOut(BaseModel):
    """The sample-ratio check: users per arm against the allocation (``flagged``: p < threshold)."""

    observed: list[int]
    expected: list[float]
    chi2: Num
    p_value: Num
    threshold: float
    flagged: bool


class ComparisonOut(BaseModel):
    """One metric of an arm against control: estimates, difference and lift with intervals, p-value."""

    test: str
    control: Num
    treatment: Num
    diff: Num
    stderr: Num
    diff_ci: list[Num]
    lift: Num
    lift_ci: list[Num]
    statistic: Num
    p_value: Num
    alpha: float
    df: Num
    significant: bool


class ArmSummaryOut(BaseModel):
    """One arm's totals from the event log."""

    name: str
    users: int
    expected_share: float
    impressions: int
    clicks: int
    ctr: Num
    clickers: int
    clicker_rate: Num
    engagement_per_user: Num


class ArmComparisonOut(BaseModel):
    """An arm against control: CTR (ratio z), clicker rate (two-proportion z), engagement (Welch)."""

    arm: str
    ctr: ComparisonOut | None
    clicker_rate: ComparisonOut | None
    engagement: ComparisonOut | None
    always_valid_p: dict[str, Num]


class GuardrailOut(BaseModel):
    """An arm's negatives (skip, not_interested, dislike) and catalogue coverage."""

    arm: str
    negatives: int
    negatives_per_user: Num
    negative_rate: Num
    distinct_items: int
    coverage: Num
    vs_control: ComparisonOut | None


class ReportOut(BaseModel):
    """An experiment's report from the event log; ``srm`` first: when flagged, distrust the rest.

    ``srm``, ``trustworthy`` and ``alpha`` are null (and the lists empty) until a user was exposed.
    ``text`` is the same report as ``funnel experiment report`` prints it.
    """

    experiment: str
    status: str
    ramp: float
    created_ms: int
    stopped_ms: int | None
    srm: SrmOut | None
    trustworthy: bool | None
    alpha: float | None
    arms: list[ArmSummaryOut]
    comparisons: list[ArmComparisonOut]
    guardrails: list[GuardrailOut]
    catalogue_items: int | None
    dropped_impressions: int
    duplicate_impressions: int
    text: str
