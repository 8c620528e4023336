"""``funnel experiment``: commands about the A/B experiments of a data directory.

``funnel experiment report NAME --data-dir D`` prints the report of experiment ``NAME`` from the
event log (:mod:`funnel.experiments.log_report`): SRM check first, per-arm results, tests against
control, guardrails. The file log is read as a snapshot without its writer lock
(:func:`funnel.monitoring.logview.open_readonly`), so this works beside a running ``funnel serve``;
with ``--redis`` it reads the Redis log the API writes. Experiments are started,
ramped and stopped through the admin API (``/v1/experiments``, see docs/experiments.md).

Example:
    funnel experiment report mmr-0.5 --data-dir D
    funnel experiment report mmr-0.5 --data-dir D --redis redis://127.0.0.1:6379/0 --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from funnel.core.errors import NotFoundError

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
