"""The exploration sweep and the filter-bubble check, by closed-loop simulation.

Run: ``python -m benchmarks.simulate_sweep [--users 10000 --days 30 --items 2000] [--quick]``.
Five scenarios on one seed and one world (same users, items, history and first model), weekly
retraining that goes live whatever the gate says (the gate's verdicts are recorded):

* ``explore-0``, ``explore-2``, ``explore-5``, ``explore-10``: ``explore_rate`` (users with a
  history) 0, 2, 5 and 10 %, everything else the engine's defaults (cold users' rate 10 %, MMR
  λ 0.2) — so the row of the default rate is the engine's defaults;
* ``bubble-off``: exploration and diversity off (both rates 0, MMR λ 0) — the bare feedback loop.

Prints the table (run means of CTR, engagement, coverage, category entropy first / last week,
exposure Gini, clicks on new items, new items reaching 100 impressions, regret, retention) and
writes ``benchmarks/results/simulate_sweep.json`` plus the plots (the report's,
:mod:`funnel.simulation.report`) into ``benchmarks/results/simulate_sweep/``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.bench_simulate import world_config, world_parser
from benchmarks.common import RESULTS, machine_meta, print_table, write_results
from funnel.simulation import Scenario
from funnel.simulation.io import write_simulation
from funnel.simulation.report import build_simulation_report
from funnel.simulation.runner import simulate_many

RATES = (0.0, 0.02, 0.05, 0.10)
"""The exploration rates of the sweep."""


def scenarios(new_items_per_day: float = Scenario.new_items_per_day) -> list[Scenario]:
    """The sweep's scenarios (module docstring), with ``new_items_per_day`` arriving."""
    world = {"gate": False, "new_items_per_day": new_items_per_day}
    out = [Scenario(name=f"explore-{round(100 * r)}", explore_rate=r, **world) for r in RATES]
    off = Scenario(name="bubble-off", explore_rate=0.0, explore_rate_cold=0.0, mmr_lambda=0.0, **world)
    return [*out, off]


def main() -> None:
    p = world_parser(__doc__.splitlines()[0])
    p.add_argument("--new-items-per-day", type=float, default=Scenario.new_items_per_day)
    args = p.parse_args()
    config = world_config(args)
    folder = Path(tempfile.mkdtemp(prefix="funnel-sweep-"))
    started = time.perf_counter()
    try:
        results = simulate_many(config, scenarios(args.new_items_per_day), folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for r in results:
        s, days = r.summary, r.days

        def mean(key: str, rows_: list = days) -> float | None:
            vals = [d[key] for d in rows_ if d[key] is not None]
            return round(sum(vals) / len(vals), 4) if vals else None

        entropies = [d["category_entropy"] for d in days if d["category_entropy"] is not None]
        rows.append({
            "scenario": r.scenario.name,
            "explore": r.scenario.explore_rate,
            "mmr": r.scenario.mmr_lambda,
            "ctr": mean("ctr"),
            "engagement": mean("engagement"),
            "coverage": mean("coverage"),
            "entropy_w1": s["entropy_first_week"],
            "entropy_last": s["entropy_last_week"],
            "entropy_min": min(entropies, default=None),
            "gini": mean("exposure_gini"),
            "new_click_share": mean("new_item_click_share"),
            "new_slot_share": mean("new_item_slot_share"),
            "reach100": s["reached_100_share"],
            "hours_to_100": s["median_hours_to_100"],
            "regret": s["regret"],
            "retention": s["retention"],
        })  # fmt: skip
    print_table(rows)
    out = RESULTS / "simulate_sweep"
    write_simulation(out, config, results)
    build_simulation_report(out, out)
    meta = {
        **machine_meta(),
        "config": config.to_dict(),
        "seconds": round(time.perf_counter() - started, 1),
        "retrains": {r.scenario.name: r.retrains for r in results},
        "timings": {r.scenario.name: {k: round(v, 1) for k, v in r.timings.items()} for r in results},
    }
    print(f"wrote {write_results('simulate_sweep', rows, meta)} and the plots in {out}")


if __name__ == "__main__":
    main()
