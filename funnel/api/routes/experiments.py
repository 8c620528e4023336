"""``/v1/experiments``: start, ramp, stop and report A/B experiments (admin scope).

* ``POST /v1/experiments`` starts an experiment (201); 409 when the name is taken or another
  experiment is running (one at a time: a response names one arm). Model versions its arms name
  are loaded first (:mod:`funnel.api.arm_models`; 422 naming the arm's field when one cannot be).
* ``PATCH /v1/experiments/{name}`` sets its ramp (percent of users in it; users keep their arm).
* ``POST /v1/experiments/{name}/stop`` stops it for good (409 when already stopped).
* ``GET /v1/experiments``, ``GET /v1/experiments/{name}``: the experiments and their history.
* ``GET /v1/experiments/{name}/report``: the report from the event log, SRM check first.

A change is written to the data directory's experiments file (under its lock: the transitions
are checked against that file, not a worker's copy) and published on the entity feed, so every
API worker serves it from its next request on (:mod:`funnel.api.experiments`).
"""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from funnel.api.deps import require, service
from funnel.api.experiment_schemas import ExperimentIn, ExperimentOut, ExperimentsOut, RampIn, ReportOut
from funnel.api.schemas import ErrorOut
from funnel.api.service import RecommendationService
from funnel.core.errors import NotTrainedError
from funnel.experiments.log_report import catalogue_size, report_from_log
from funnel.experiments.store import NAME_PATTERN

router = APIRouter(tags=["experiments"], dependencies=[Depends(require("admin"))])
ExperimentName = Annotated[str, Path(pattern=NAME_PATTERN, description="the experiment's name")]
_ERRORS = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 503: {"model": ErrorOut}}
_READ_ERRORS = {**_ERRORS, 404: {"model": ErrorOut}, 422: {"model": ErrorOut}}
_WRITE_ERRORS = {
    **_READ_ERRORS,
    400: {"model": ErrorOut},
    409: {"model": ErrorOut},
    413: {"model": ErrorOut},
}
_svc = Depends(service)


def _refresh(svc: RecommendationService) -> None:
    """Apply the entity feed (other workers' changes); without a model yet, the state held serves."""
    with contextlib.suppress(NotTrainedError):
        svc.catch_up()


@router.get("/v1/experiments", response_model=ExperimentsOut, responses=_ERRORS)  # type: ignore[misc]
def list_experiments(svc: RecommendationService = _svc) -> ExperimentsOut:
    """Every experiment, the running one first, then the newest."""
    _refresh(svc)
    return ExperimentsOut(experiments=[ExperimentOut.of(r) for r in svc.experiments.all()])


@router.post("/v1/experiments", status_code=201, response_model=ExperimentOut, responses=_WRITE_ERRORS)  # type: ignore[misc]
def start_experiment(body: ExperimentIn, svc: RecommendationService = _svc) -> ExperimentOut:
    """Start an experiment: from the next request on, its users are served their arm's settings.

    Model versions the arms name are checked and loaded first (422 naming the arm's field).
    """
    record = svc.arm_models.start(body.config())
    return ExperimentOut.of(record)


@router.get("/v1/experiments/{name}", response_model=ExperimentOut, responses=_READ_ERRORS)  # type: ignore[misc]
def get_experiment(name: ExperimentName, svc: RecommendationService = _svc) -> ExperimentOut:
    """One experiment: config, status, ramp history."""
    _refresh(svc)
    return ExperimentOut.of(svc.experiments.get(name))


@router.patch("/v1/experiments/{name}", response_model=ExperimentOut, responses=_WRITE_ERRORS)  # type: ignore[misc]
def ramp_experiment(name: ExperimentName, body: RampIn, svc: RecommendationService = _svc) -> ExperimentOut:
    """Set the percentage of users in a running experiment (ramping up only adds users)."""
    record = svc.experiments.ramp(name, body.ramp)
    return ExperimentOut.of(record)


@router.post("/v1/experiments/{name}/stop", response_model=ExperimentOut, responses=_WRITE_ERRORS)  # type: ignore[misc]
def stop_experiment(name: ExperimentName, svc: RecommendationService = _svc) -> ExperimentOut:
    """Stop an experiment for good: nobody is assigned an arm any more; its arms' versions are unloaded."""
    record = svc.arm_models.stop(name)
    return ExperimentOut.of(record)


@router.get("/v1/experiments/{name}/report", response_model=ReportOut, responses=_READ_ERRORS)  # type: ignore[misc]
def experiment_report(
    name: ExperimentName,
    alpha: Annotated[float, Query(ge=0.001, le=0.5, description="level of the tests and intervals")] = 0.05,
    svc: RecommendationService = _svc,
) -> ReportOut:
    """The experiment's report from the event log: SRM check, per-arm metrics, tests, guardrails."""
    _refresh(svc)
    record = svc.experiments.get(name)
    engine = svc.engine
    result = report_from_log(engine.event_log, record, catalogue_size(engine.lake), alpha)
    return ReportOut(**result.to_dict(), text=result.format())
