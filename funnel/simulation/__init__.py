"""Closed-loop simulation: synthetic users with hidden, drifting tastes against the real engine.

``simulate(SimConfig(...), Scenario(...), data_dir)`` builds a world from the synthetic
generator's ground truth, trains the engine on its history, and runs day after day: pages from
the real serving pipeline, clicks drawn from the truth (position bias, fatigue), departures,
new items and users arriving, every event through the event log, retraining on the scenario's
cadence. It returns daily metrics (CTR, engagement, retention, coverage, category entropy,
exposure Gini, new-item share and reach, regret against the oracle); see ``docs/simulation.md``.
"""

from funnel.simulation.config import Scenario, SimConfig, load_scenarios
from funnel.simulation.runner import SimResult, prepare, run, simulate

__all__ = ["Scenario", "SimConfig", "SimResult", "load_scenarios", "prepare", "run", "simulate"]
