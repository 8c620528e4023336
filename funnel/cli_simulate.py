"""``funnel simulate``: the closed-loop simulator on the command line (:mod:`funnel.simulation`).

Every scenario of ``--scenario FILE`` (default: one scenario with the engine's defaults) runs on
the same seed in its own engine directory ``DIR/<scenario name>``; the daily metrics go to
``DIR/simulation/`` (``simulation.json``, ``daily.parquet``, ``timings.json``) and, with
``--json OUT``, the metrics-only JSON to ``OUT`` (two runs with one seed compare byte for byte).
``funnel report --simulation DIR/simulation --out R`` renders them.

Example:
    funnel simulate --users 10000 --days 30 --seed 0 --data-dir sim/ --json sim.json
    funnel simulate --users 2000 --days 14 --data-dir sim/ --scenario sweep.json
    funnel simulate --users 200 --days 2 --data-dir sim/ --http http://127.0.0.1:8000
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from funnel.core.errors import ConfigError


def simulate(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Folder for the engines and the results.")],
    users: Annotated[
        int, typer.Option("--users", min=10, help="Simulated users (arrivals included).")
    ] = 10_000,
    days: Annotated[int, typer.Option("--days", min=1, max=3650, help="Simulated days.")] = 30,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the world and every draw.")] = 0,
    scenario: Annotated[
        Path | None, typer.Option("--scenario", help='JSON: a scenario, a list, or {"scenarios": [...]}.')
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the daily metrics (no timings) here.")
    ] = None,
    items: Annotated[int, typer.Option("--items", min=50, help="Catalogue size at day 0.")] = 2_000,
    visits: Annotated[
        float, typer.Option("--visits-per-day", min=0.001, max=1000, help="Mean pages per user per day.")
    ] = 0.2,
    http: Annotated[
        str | None,
        typer.Option("--http", help="Ask a running `funnel serve` over HTTP (its data dir: prepared here)."),
    ] = None,
) -> None:
    """Simulate users against the engine day by day; write daily metrics (see docs/simulation.md)."""
    from funnel.cli import console
    from funnel.simulation.config import Scenario, SimConfig, load_scenarios
    from funnel.simulation.io import metrics_json, write_simulation

    config = SimConfig(users=users, days=days, seed=seed, n_items=items, visits_per_day=visits)
    scenarios = load_scenarios(scenario) if scenario is not None else [Scenario()]
    taken = [s.name for s in scenarios if (data_dir / s.name).exists()]
    if taken and http is None:
        raise ConfigError(f"{data_dir / taken[0]} already exists: pick an empty --data-dir")
    if json_out is not None and json_out.is_dir():
        raise ConfigError(f"--json {json_out} is a directory: give a file path")
    if http is not None:
        from funnel.simulation.http import simulate_http

        if len(scenarios) != 1:
            raise ConfigError("--http runs one scenario (the server's settings apply): give a file with one")
        engine_dir = data_dir / scenarios[0].name
        done = simulate_http(config, scenarios[0], http, engine_dir)
        if done is None:
            console.print(
                f"prepared {engine_dir}: start `funnel serve --data-dir {engine_dir}`, then run again"
            )
            return
        results = [done]
    else:
        from funnel.simulation.runner import simulate_many

        results = simulate_many(config, scenarios, data_dir)
    out = write_simulation(data_dir / "simulation", config, results)
    if json_out is not None:
        json_out.write_text(metrics_json(config, results))
    for r in results:
        s = r.summary
        console.print(
            f"{r.scenario.name}: CTR {_pct(s['ctr'])}, retention {_pct(s['retention'])}, coverage "
            f"{_pct(s['coverage'])}, entropy {s['entropy_first_week']} -> {s['entropy_last_week']} bits, "
            f"regret {s['regret']}, new items reaching 100 impressions {_pct(s['reached_100_share'])}",
            markup=False,
            highlight=False,
        )
    console.print(f"wrote {out}")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"
