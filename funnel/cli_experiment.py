"""``funnel experiment``: commands about the A/B experiments of a data directory.

``funnel experiment report NAME --data-dir D`` prints the report of experiment ``NAME`` from the
event log (:mod:`funnel.experiments.log_report`): SRM check first, per-arm results, tests against
control, guardrails. The file log is read as a snapshot without its writer lock
(:func:`funnel.monitoring.logview.open_readonly`), so this works beside a running ``funnel serve``;
with ``--redis`` it reads the Redis log the API writes. Experiments are started,
ramped and stopped through the admin API (``/v1/experiments``, see docs/experiments.md).

``funnel experiment ope --policy VERSION --data-dir D`` estimates the click rate per slot that
model version (with ``--overrides``: an arm's settings) would have had on the logged impressions:
IPS, SNIPS and doubly robust, with intervals (:mod:`funnel.experiments.ope_replay`).

Example:
    funnel experiment report mmr-0.5 --data-dir D
    funnel experiment report mmr-0.5 --data-dir D --redis redis://127.0.0.1:6379/0 --json
    funnel experiment ope --policy 20261122-105100.042-3fa2c1 --data-dir D --since 2026-11-22
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from funnel.core.errors import NotFoundError, ValidationError

experiment_app = typer.Typer(
    no_args_is_help=True, help="A/B experiments: reports from the event log (start/ramp/stop: the admin API)."
)


@experiment_app.command("report")
def report(
    name: Annotated[str, typer.Argument(help="The experiment's name.")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The engine's data directory.")] = Path(
        "./funnel-data"
    ),
    redis: Annotated[
        str | None, typer.Option(help="redis://host:port/db: read the Redis event log of `serve --redis`.")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Redis stream name prefix.")] = "funnel",
    alpha: Annotated[
        float, typer.Option(min=0.001, max=0.5, help="Level of the tests and intervals.")
    ] = 0.05,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Report experiment NAME from the event log: SRM, per-arm metrics, tests, guardrails."""
    from funnel.experiments.store import FILE_NAME, ExperimentStore

    if not data_dir.is_dir():
        raise NotFoundError(f"data directory {data_dir} does not exist")
    records = ExperimentStore(data_dir / FILE_NAME).load()
    if name not in records:
        known = ", ".join(sorted(records)) or "none yet"
        raise NotFoundError(f"no experiment {name!r} in {data_dir} (experiments: {known})")
    from funnel.api.server import ServeConfig
    from funnel.data.lake import Lake
    from funnel.events.memory_log import MemoryEventLog
    from funnel.experiments.log_report import catalogue_size, report_from_log
    from funnel.monitoring.logview import open_readonly

    logged = redis is not None or (data_dir / "events" / "log.json").exists()
    log = open_readonly(ServeConfig(data_dir, redis, prefix).event_log_url()) if logged else MemoryEventLog()
    try:
        result = report_from_log(log, records[name], catalogue_size(Lake(data_dir / "lake")), alpha)
    finally:
        log.close()
    typer.echo(json.dumps(result.to_dict(), indent=1) if as_json else result.format())


@experiment_app.command("ope")
def ope(
    policy: Annotated[str, typer.Option("--policy", help="The model version to evaluate.")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The engine's data directory.")] = Path(
        "./funnel-data"
    ),
    since: Annotated[
        str | None, typer.Option(help="Impressions from this time on: ISO date/time (UTC) or epoch ms.")
    ] = None,
    overrides: Annotated[
        str | None, typer.Option(help='Arm overrides of the version, JSON: {"head_weights": {"like": 2}}.')
    ] = None,
    max_position: Annotated[
        int | None, typer.Option(min=1, help="Only slots at positions below this (1: the top slot).")
    ] = None,
    max_impressions: Annotated[
        int | None, typer.Option(min=2, help="Only the newest N impressions (one ranked page each).")
    ] = None,
    redis: Annotated[
        str | None, typer.Option(help="redis://host:port/db: read the Redis event log of `serve --redis`.")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Redis stream name prefix.")] = "funnel",
    alpha: Annotated[float, typer.Option(min=0.001, max=0.5, help="Level of the intervals.")] = 0.05,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Off-policy estimates of model version POLICY's click rate per slot from the logged impressions."""
    if not data_dir.is_dir():
        raise NotFoundError(f"data directory {data_dir} does not exist")
    from funnel.api.server import ServeConfig
    from funnel.events.memory_log import MemoryEventLog
    from funnel.experiments.ope_replay import evaluate_version
    from funnel.experiments.overrides import ArmOverrides
    from funnel.monitoring.logview import open_readonly

    arm = ArmOverrides.from_dict(_json_option(overrides, "--overrides"), "--overrides") if overrides else None
    since_ms = _time_option(since) if since is not None else None
    logged = redis is not None or (data_dir / "events" / "log.json").exists()
    log = open_readonly(ServeConfig(data_dir, redis, prefix).event_log_url()) if logged else MemoryEventLog()
    try:
        found = evaluate_version(
            data_dir, log, policy, since_ms=since_ms, overrides=arm, max_position=max_position,
            max_impressions=max_impressions, alpha=alpha,
        )  # fmt: skip
    finally:
        log.close()
    typer.echo(json.dumps(found.to_dict(), indent=1) if as_json else found.format())


def _json_option(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"is not JSON: {exc.msg} at character {exc.pos}", field=name) from None


def _time_option(text: str) -> int:
    """``--since`` as epoch ms: digits are epoch ms, else an ISO date or time (UTC unless it says)."""
    from datetime import UTC, datetime

    if text.strip().isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            f"{text!r} is not a time: give an ISO date or time (2026-11-22, 2026-11-22T08:00) or epoch ms",
            field="--since",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
