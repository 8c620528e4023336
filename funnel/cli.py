"""``funnel``: the command line. Every command that keeps state takes ``--data-dir``.

Example:
    funnel demo --data-dir ./funnel-data
    funnel import --data-dir D --data ../shared/data/movietweetings-100k --format movietweetings
    funnel train --data-dir D
    funnel recommend --data-dir D --user 42 --k 10

Errors funnel raises on purpose print one line to stderr; input the user can fix exits with 2.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer
from rich.console import Console

from funnel.cli_experiment import experiment_app
from funnel.core.errors import FunnelError, exit_code

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="funnel: a multi-stage recommendation engine.",
)
# Wide enough for the evaluation table when stdout is a file or a pipe (rich assumes 80 columns).
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="The engine's data directory.")]
Format = Annotated[str, typer.Option("--format", help="movielens | movietweetings | csv | parquet")]
UserCol = Annotated[str, typer.Option("--user-col", help="Generic CSV/Parquet: user id column.")]
ItemCol = Annotated[str, typer.Option("--item-col", help="Generic CSV/Parquet: item id column.")]
TimeCol = Annotated[str, typer.Option("--time-col", help="Generic CSV/Parquet: timestamp column.")]
TypeCol = Annotated[str | None, typer.Option("--type-col", help="Generic CSV/Parquet: event type column.")]
ValueCol = Annotated[str | None, typer.Option("--value-col", help="Generic CSV/Parquet: value column.")]
OnError = Annotated[
    str, typer.Option("--on-error", help="fail: stop at bad rows (exit 2); skip: report them.")
]
DEFAULT_DIR = Path("./funnel-data")


def _mapping(
    fmt: str, user_col: str, item_col: str, time_col: str, type_col: str | None, value_col: str | None
):
    """The column mapping of a generic format (``None`` for the formats with fixed layouts)."""
    from funnel.data.importers import ColumnMapping

    if fmt not in ("csv", "parquet"):
        return None
    return ColumnMapping(
        user_col=user_col, item_col=item_col, time_col=time_col, type_col=type_col, value_col=value_col
    )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    from funnel.core.errors import ValidationError

    if value not in choices:
        raise ValidationError(f"must be one of {', '.join(choices)}, got {value!r}", field=name)


@app.command("import")
def import_(
    data: Annotated[Path, typer.Option("--data", help="A file or folder to import.")],
    fmt: Format = "csv",
    data_dir: DataDir = DEFAULT_DIR,
    items: Annotated[Path | None, typer.Option("--items", help="Generic format: items file.")] = None,
    user_col: UserCol = "user_id",
    item_col: ItemCol = "item_id",
    time_col: TimeCol = "timestamp",
    type_col: TypeCol = None,
    value_col: ValueCol = None,
    on_error: OnError = "fail",
) -> None:
    """Import interactions (and items/users where the format has them) into the data directory."""
    from funnel.data.importers import FORMATS, import_dataset
    from funnel.engine import Engine

    _check_choice("--format", fmt, FORMATS)
    _check_choice("--on-error", on_error, ("fail", "skip"))
    engine = Engine(data_dir)
    with engine.lake.writer() as writer:
        report = import_dataset(
            data,
            fmt,
            sink=writer.write,
            mapping=_mapping(fmt, user_col, item_col, time_col, type_col, value_col),
            on_error=on_error,
            items_path=items,
        )
        rows = writer.commit()
    console.print(report.summary())
    console.print(f"imported into {data_dir}: " + ", ".join(f"{v} {k}" for k, v in sorted(rows.items())))


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option("--data", help="A file or folder to evaluate on.")],
    fmt: Format = "csv",
    protocol: Annotated[str, typer.Option(help="strat | usertemporal | temporal")] = "strat",
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Cut-off of the metrics.")] = 10,
    models: Annotated[
        str, typer.Option(help="Comma-separated: pop,itemknn,ease,als,pipeline (retrieval + ranker)")
    ] = "pop,itemknn,ease,als",
    ratio: Annotated[float, typer.Option(min=0.05, max=0.95, help="Training fraction.")] = 0.75,
    seed: Annotated[int, typer.Option(help="Random seed of the split.")] = 42,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
    stage: Annotated[
        str,
        typer.Option(
            help="models: ranking metrics of the baselines | retrieval: candidate recall per source"
        ),
    ] = "models",
    sources: Annotated[
        str | None,
        typer.Option(
            help="--stage retrieval: comma-separated sources (default: the Retriever's default sources)"
        ),
    ] = None,
    user_col: UserCol = "user_id",
    item_col: ItemCol = "item_id",
    time_col: TimeCol = "timestamp",
    type_col: TypeCol = None,
    value_col: ValueCol = None,
) -> None:
    """Evaluate offline on a dataset: baselines (one row per model) or the retrieval stage."""
    from funnel.cli_output import evaluation_table
    from funnel.core.interactions import Interactions
    from funnel.data.importers import FORMATS, load_interactions
    from funnel.eval.runner import PIPELINE, SOURCE_MODELS, evaluate_models
    from funnel.eval.splits import PROTOCOLS
    from funnel.retrieval.models import MODELS

    _check_choice("--format", fmt, FORMATS)
    _check_choice("--protocol", protocol, tuple(PROTOCOLS))
    _check_choice("--stage", stage, ("models", "retrieval"))
    mapping = _mapping(fmt, user_col, item_col, time_col, type_col, value_col)
    if stage == "retrieval":
        _evaluate_retrieval(data, fmt, mapping, protocol, ratio, seed, json_out, sources)
        return
    names = [m.strip() for m in models.split(",") if m.strip()]
    for name in names:
        _check_choice("--models", name, (*MODELS, *SOURCE_MODELS, PIPELINE))
    if PIPELINE in names:
        tables = _load_all(data, fmt, mapping)
    else:
        tables = {"interactions": load_interactions(data, fmt, mapping=mapping)}
    report = evaluate_models(
        Interactions.from_table(tables["interactions"]), protocol, k, names, ratio=ratio, seed=seed,
        items_table=tables.get("items"), users_table=tables.get("users"),
    )  # fmt: skip
    result = report.to_json_dict()
    result["dataset"] = data.name
    console.print(evaluation_table(result, n_users=report.n_users))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {json_out}")


def _load_all(data: Path, fmt: str, mapping: object) -> dict[str, pa.Table]:
    """Every kind of table a dataset holds (interactions, and items / users when present)."""
    from funnel.core.errors import ValidationError
    from funnel.data.importers import import_dataset

    got: dict[str, list] = {}
    import_dataset(data, fmt, sink=lambda kind, t: got.setdefault(kind, []).append(t), mapping=mapping)
    if "interactions" not in got:
        raise ValidationError(f"no interactions found in {data}", field="--data")
    return {kind: pa.concat_tables(parts) for kind, parts in got.items()}


def _evaluate_retrieval(
    data: Path,
    fmt: str,
    mapping: object,
    protocol: str,
    ratio: float,
    seed: int,
    json_out: Path | None,
    sources: str | None,
) -> None:
    """Recall@500/1000 of held-out items in each source's candidates and in the merged set."""
    from funnel.cli_output import retrieval_table
    from funnel.core.errors import ValidationError
    from funnel.retrieval.report import retrieval_report
    from funnel.retrieval.sources.registry import source_class

    chosen = None
    if sources:
        chosen = {name.strip(): {} for name in sources.split(",") if name.strip()}
        for name in chosen:
            if source_class(name) is None:
                raise ValidationError(f"unknown source {name!r}", field="--sources")
    tables = _load_all(data, fmt, mapping)
    result = retrieval_report(
        tables["interactions"],
        protocol,
        ks=(500, 1000),
        sources=chosen,
        seed=seed,
        items=tables.get("items"),
        users=tables.get("users"),
        ratio=ratio,
        dataset=data.name,
    )
    console.print(retrieval_table(result))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {json_out}")


@app.command()
def train(
    data_dir: DataDir = DEFAULT_DIR,
    model: Annotated[
        str,
        typer.Option(
            help="auto (retrieval + ranker, best baseline as fallback) | ease | als | itemknn | pop (only it)"
        ),
    ] = "auto",
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Cut-off for model selection.")] = 10,
    force: Annotated[
        bool, typer.Option("--force", help="Make the new version live even if the gate rejects it.")
    ] = False,
    tolerance: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Gate: relative NDCG@k regression allowed (default 0.05)."),
    ] = None,
) -> None:
    """Train on everything in the data directory; the new version goes live if the gate passes it."""
    from funnel.cli_output import gate_table, train_table
    from funnel.engine import Engine
    from funnel.training.gates import GateConfig

    engine = Engine(data_dir)
    gate = GateConfig() if tolerance is None else GateConfig(ndcg_tolerance=tolerance)
    summary = engine.train(model=model, k=k, gate=gate, force=force)
    console.print(train_table(summary))
    if summary.gate:
        console.print(gate_table(summary.gate))
    if summary.status == "rejected":
        console.print(
            f"{summary.version} stays in the registry as rejected; {engine.model_version or 'no version'} "
            f"serves. Override: funnel models promote {summary.version} --force"
        )


@app.command()
def recommend(
    user: Annotated[list[str] | None, typer.Option("--user", help="A user id (repeatable).")] = None,
    item: Annotated[str | None, typer.Option("--item", help="Similar items to this item instead.")] = None,
    data_dir: DataDir = DEFAULT_DIR,
    k: Annotated[int, typer.Option("--k", min=1, max=1000)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="Top-k for every user into --out (resumable, parallel).")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="--all-users: the Parquet file to write.")] = None,
    workers: Annotated[int, typer.Option("--workers", help="--all-users: processes (default 1).")] = 1,
    part_size: Annotated[
        int, typer.Option("--part-size", help="--all-users: users per resumable part.")
    ] = 2000,
) -> None:
    """Recommend for users (or similar items) from the live model; --all-users precomputes everyone.

    Example: funnel recommend --data-dir D --all-users --out top10.parquet --k 10 --workers 2
    """
    from funnel.cli_output import recommendations_table
    from funnel.core.errors import ValidationError
    from funnel.engine import Engine

    if all_users or out is not None:
        _recommend_all(data_dir, all_users, out, k, workers, part_size, bool(user or item is not None))
        return
    if not user and item is None:
        raise ValidationError("give at least one --user, or --item for similar items", field="--user")
    engine = Engine(data_dir)
    results = {f"similar to {item}": engine.similar_items(item, k)} if item is not None else {}
    for u in user or []:
        results[u] = engine.recommend(u, k)
    if as_json:
        payload = {key: [r.__dict__ for r in recs] for key, recs in results.items()}
        typer.echo(json.dumps({"model_version": engine.model_version, "results": payload}, indent=2))
        return
    for key, recs in results.items():
        console.print(recommendations_table(key, recs))


def _recommend_all(
    data_dir: Path, all_users: bool, out: Path | None, k: int, workers: int, part_size: int, named: bool
) -> None:
    """``recommend --all-users --out FILE.parquet``: the batch precompute with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from funnel.batch import plan_batch, run_job
    from funnel.core.errors import ValidationError

    if not all_users:
        raise ValidationError("--out writes the top-k of every user: add --all-users", field="--out")
    if out is None:
        raise ValidationError("--all-users needs --out FILE.parquet", field="--out")
    if named:
        raise ValidationError("--all-users takes no --user or --item", field="--all-users")
    job = plan_batch(data_dir, out, k, workers, part_size)  # bad arguments: one line, before any bar
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress("users", *columns, console=err_console) as bar:
        task = bar.add_task("users", total=job.n_users)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = run_job(job, workers, progress=advance)
    rate = result.users / result.seconds if result.seconds > 0 else float("nan")
    console.print(
        f"wrote {result.rows} rows for {result.users} users to {result.out} (model {result.version}, "
        f"{result.parts_run} parts computed, {result.parts_skipped} already done; "
        f"{result.seconds:.1f}s, {rate:,.0f} users/s)"
    )


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the synthetic dataset to.")],
    users: Annotated[int, typer.Option(min=1)] = 2_000,
    items: Annotated[int, typer.Option(min=1)] = 2_000,
    interactions: Annotated[int, typer.Option(min=1)] = 200_000,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write a synthetic dataset with a hidden ground truth (Parquet + truth.npz)."""
    from funnel.data.synthetic import SyntheticConfig, generate, write_dataset

    config = SyntheticConfig(n_users=users, n_items=items, n_interactions=interactions, seed=seed)
    dataset = generate(config)
    write_dataset(dataset, out)
    console.print(
        f"wrote {dataset.interactions.num_rows} interactions, {dataset.items.num_rows} items, "
        f"{dataset.users.num_rows} users to {out}"
    )


@app.command()
def demo(
    data_dir: DataDir = DEFAULT_DIR,
    users: Annotated[int, typer.Option(min=50)] = 3_000,
    items: Annotated[int, typer.Option(min=50)] = 2_000,
    interactions: Annotated[int, typer.Option(min=1_000)] = 200_000,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Generate synthetic data, import it, train, and print recommendations with reasons."""
    from funnel.demo import run_demo

    run_demo(data_dir, users, items, interactions, seed, console)


@app.command()
def serve(
    data_dir: DataDir = DEFAULT_DIR,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn processes (>1 needs --redis).")] = 1,
    redis: Annotated[
        str | None, typer.Option(help="redis://host:port/db: event log + entity feed on Redis.")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Redis stream name prefix.")] = "funnel",
    api_keys: Annotated[
        Path | None, typer.Option("--api-keys", help='JSON file {"<key>": ["read","write","admin"]}.')
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Embedded mode without the retrain thread.")
    ] = False,
    served_feature_sample: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Share of requests whose scored features go to DATA_DIR/served_features/."
        ),
    ] = 0.01,
) -> None:
    """Serve the HTTP API (embedded without --redis: one process running the worker too)."""
    from funnel.api.server import ServeConfig
    from funnel.api.server import serve as run

    config = ServeConfig(
        data_dir, redis, prefix, workers, api_keys, not no_worker, served_feature_sample=served_feature_sample
    )
    run(config, host, port)


@app.command()
def worker(
    data_dir: DataDir = DEFAULT_DIR,
    redis: Annotated[str | None, typer.Option(help="redis://host:port/db of the served event log.")] = None,
    prefix: Annotated[str, typer.Option(help="Redis stream name prefix.")] = "funnel",
    retrain_events: Annotated[int, typer.Option(min=1, help="Retrain after this many new events.")] = 10_000,
    retrain_interval: Annotated[
        float | None, typer.Option(min=1, help="Also retrain every this many seconds (with new events).")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="One step, then exit.")] = False,
) -> None:
    """Consume the event log and retrain on schedule (run beside `funnel serve --redis`)."""
    import threading

    from funnel.api.server import ServeConfig
    from funnel.api.worker import Worker
    from funnel.engine import Engine

    config = ServeConfig(data_dir, redis, prefix)
    w = Worker(Engine(data_dir, event_log_url=config.event_log_url()), retrain_events, retrain_interval)
    if once:
        console.print(w.run_once())
        return
    stop = threading.Event()
    try:
        w.run(stop)
    except KeyboardInterrupt:
        stop.set()


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", help="Folder to write index.html and the PNG plots to.")],
    data_dir: DataDir = DEFAULT_DIR,
    redis: Annotated[str | None, typer.Option(help="redis://host:port/db of the served event log.")] = None,
    prefix: Annotated[str, typer.Option(help="Redis stream name prefix.")] = "funnel",
    window_hours: Annotated[float, typer.Option(min=0.01, help="Quality monitors' window, hours.")] = 24.0,
    days: Annotated[float, typer.Option(min=0.01, help="Days of impressions to plot.")] = 14.0,
    simulation: Annotated[
        Path | None, typer.Option(help="Render a `funnel simulate` results folder (DIR/simulation) instead.")
    ] = None,
) -> None:
    """Monitoring report: quality over time, staleness, skew and index alarms (HTML + PNGs)."""
    from funnel.api.server import ServeConfig
    from funnel.monitoring.report import build_report

    if simulation is not None:
        from funnel.simulation.report import build_simulation_report

        console.print(f"wrote {build_simulation_report(simulation, out)}")
        return

    url = ServeConfig(data_dir, redis, prefix).event_log_url()
    path, data = build_report(data_dir, out, url, window_h=window_hours, days=days)
    for alarm in data.alarms:
        console.print(f"{alarm.status:>8}  {alarm.name}: {alarm.message}", markup=False, highlight=False)
    console.print(f"wrote {path}")


app.add_typer(experiment_app, name="experiment")


from funnel.cli_models import models_app  # noqa: E402  (registered once the app exists)

app.add_typer(models_app, name="models")

from funnel.cli_simulate import simulate  # noqa: E402

app.command("simulate")(simulate)


def main() -> None:
    """Console entry point: run the app, mapping funnel errors to one line and an exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()  # standalone: usage errors print their message and exit with 2
    except FunnelError as e:
        err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exit_code(e))
