"""Training–serving skew: PSI between the feature values served and their offline recomputation.

The served-feature log (:class:`~funnel.features.serving.ServedFeatureLog`, JSON lines under
``<data_dir>/served_features/`` by convention: :data:`SERVED_DIR`) holds a sample of the vectors
the online store served: user, items and time ``t``. :func:`served_rows` expands them into one
row per ``(user, item, t)`` with the served values; the offline store
(:meth:`~funnel.features.offline.OfflineStore.get_historical_features`) recomputes the same rows
point in time from the event log, as ``tests/integration/test_feature_skew.py`` compares them
value by value. Here the comparison is of distributions, per numeric feature: the *population
stability index*

    PSI = Σ_bins (a - e) · ln(a / e)

with ``e`` the share of offline values and ``a`` the share of served values in each bin (bins:
20 offline quantiles; a feature with at most ``bins`` distinct offline values gets one bin per value
plus one for any other value; shares floored at 1e-4). PSI is 0 for identical distributions;
above 0.2 (``MonitorConfig.psi_threshold``) is the usual "investigate" level. Twenty bins rather
than the customary ten: a feature scaled by 1.5 online then crosses 0.2 for every feature that
is non-zero on most rows (with deciles, wide count distributions such as 30-day activity stay
near 0.1; ``tests/integration/test_monitoring_skew.py``). Sampling noise of two independent samples
of ``n`` rows each is about ``19 · 2 / n`` (0.04 at 1000 rows). List features (recent items) are
left out.

Example:
    >>> rng = np.random.default_rng(0)
    >>> x = rng.gamma(2.0, 1.0, 5000)
    >>> round(psi(x, rng.permutation(x)), 4), psi(x, 1.5 * x) > 0.2
    (0.0, True)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from funnel.features.definitions import FEATURES, FeatureDef
from funnel.features.offline import OfflineStore
from funnel.features.serving import SERVED_DIR as SERVED_DIR  # the log's folder; re-exported
from funnel.monitoring.alarms import Alarm, MonitorConfig

EPS = 1e-4


def _bins(expected: np.ndarray, actual: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin counts of ``expected`` and ``actual`` (see the module docstring)."""
    distinct = np.unique(expected)
    if len(distinct) <= bins:  # one bin per offline value, and one for anything else

        def code(x: np.ndarray) -> np.ndarray:
            at = np.clip(np.searchsorted(distinct, x), 0, len(distinct) - 1)
            near = np.clip(at - 1, 0, len(distinct) - 1)
            best = np.where(np.abs(distinct[near] - x) < np.abs(distinct[at] - x), near, at)
            hit = np.abs(distinct[best] - x) <= 1e-6 * (1.0 + np.abs(x))
            return np.where(hit, best, len(distinct))

        n = len(distinct) + 1
    else:
        edges = np.unique(np.quantile(expected, np.linspace(0.0, 1.0, bins + 1))[1:-1])

        def code(x: np.ndarray) -> np.ndarray:
            return np.searchsorted(edges, x, side="right")

        n = len(edges) + 1
    return np.bincount(code(expected), minlength=n), np.bincount(code(actual), minlength=n)


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 20) -> float:
    """Population stability index of ``actual`` against ``expected`` (NaNs dropped; NaN when one is empty)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    e, a = e[~np.isnan(e)], a[~np.isnan(a)]
    if len(e) == 0 or len(a) == 0:
        return float("nan")
    ce, ca = _bins(e, a, bins)
    pe = np.maximum(ce / len(e), EPS)
    pa_ = np.maximum(ca / len(a), EPS)
    return float(np.sum((pa_ - pe) * np.log(pa_ / pe)))


def served_rows(
    lines: Iterable[dict], defs: Sequence[FeatureDef] = FEATURES
) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """Served-feature log lines -> rows ``(user_id, item_id, timestamp)`` and served values per feature."""
    names = [f.name for f in defs if f.dtype != "list"]
    users, items, ts = [], [], []
    values: dict[str, list[float]] = {n: [] for n in names}
    for line in lines:
        n = len(line["item_ids"])
        users += [line["user_id"]] * n
        items += line["item_ids"]
        ts += [int(line["t"])] * n
        for name in names:
            if name in line["items"]:
                values[name] += [float("nan") if v is None else float(v) for v in line["items"][name]]
            else:
                v = line["user"].get(name)
                values[name] += [float("nan") if v is None else float(v)] * n
    rows = pa.table({"user_id": pa.array(users, pa.string()), "item_id": pa.array(items, pa.string()),
                     "timestamp": pa.array(ts, pa.int64())})  # fmt: skip
    return rows, {n: np.asarray(v, dtype=np.float64) for n, v in values.items()}


@dataclass(frozen=True)
class FeatureSkew:
    """One feature over the compared rows: PSI, means, and the share of rows whose values differ.

    ``mismatch_share`` (``|served - offline| > 1e-6 (1 + |offline|)``) is a diagnostic: point-in-time
    recomputation reproduces served values exactly, so any mismatch is a bug or a late event.
    """

    feature: str
    psi: float
    served_mean: float
    offline_mean: float
    mismatch_share: float = math.nan


def compare(served: dict[str, np.ndarray], recomputed: pa.Table, bins: int = 20) -> list[FeatureSkew]:
    """:class:`FeatureSkew` of each served feature against its ``recomputed`` column, worst PSI first."""
    out = []
    for name, on in served.items():
        off = np.asarray(recomputed.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
        both = ~(np.isnan(on) | np.isnan(off))
        differ = np.abs(on[both] - off[both]) > 1e-6 * (1.0 + np.abs(off[both]))
        mismatch = float(differ.mean()) if both.any() else math.nan
        mean_on = float(np.nanmean(on)) if both.any() else math.nan
        mean_off = float(np.nanmean(off)) if both.any() else math.nan
        out.append(FeatureSkew(name, psi(off, on, bins), mean_on, mean_off, mismatch))
    return sorted(out, key=lambda s: -s.psi if not math.isnan(s.psi) else math.inf)


def feature_skew(
    lines: Sequence[dict], offline: OfflineStore, bins: int = 20, defs: Sequence[FeatureDef] = FEATURES
) -> list[FeatureSkew]:
    """PSI of every numeric feature between served ``lines`` and ``offline`` recomputation, worst first."""
    rows, served = served_rows(lines, defs)
    if rows.num_rows == 0:
        return []
    return compare(served, offline.get_historical_features(rows), bins)


def skew_alarm(skews: Sequence[FeatureSkew], config: MonitorConfig | None = None) -> Alarm:
    """``feature_skew``: the largest PSI over the features exceeds ``psi_threshold``."""
    limit = (config or MonitorConfig()).psi_threshold
    if not skews:
        return Alarm.check("feature_skew", math.nan, limit, "PSI", "no served-feature log to compare")
    worst = skews[0]
    over = [s.feature for s in skews if s.psi > limit]
    msg = f"max PSI {worst.psi:.3f} ({worst.feature}); over {limit:g}: {', '.join(over) or 'none'}"
    return Alarm.check("feature_skew", worst.psi, limit, "PSI", msg)


def read_served(folder: str | Path, max_lines: int = 2_000, max_rows: int = 100_000) -> list[dict]:
    """The newest lines of the served-feature log in ``folder``, oldest first.

    At most ``max_lines`` lines, and no more lines than it takes to reach ``max_rows`` candidate rows
    (a sampled request logs every candidate it scored: hundreds). The files are read from their
    end, so the cost does not grow with the log; a line being written while this reads (cut short)
    is skipped.
    """
    out: list[dict] = []
    rows = 0
    for path in sorted(Path(folder).glob("served-*.jsonl"), reverse=True):
        for text in _reverse_lines(path):
            try:
                line = json.loads(text)
            except ValueError:
                continue
            out.append(line)
            rows += len(line.get("item_ids") or ())
            if len(out) >= max_lines or rows >= max_rows:
                return out[::-1]
    return out[::-1]


def _reverse_lines(path: Path, block: int = 1 << 20) -> Iterator[bytes]:
    """The non-empty lines of ``path`` from the last to the first, read in blocks from the end."""
    with open(path, "rb") as fh:
        end = fh.seek(0, 2)
        tail = b""
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            parts = (fh.read(end - start) + tail).split(b"\n")
            end = start
            tail = parts.pop(0) if end > 0 else b""  # maybe cut by the block boundary: joined next
            yield from (x for x in reversed(parts) if x)
        if tail:
            yield tail


def save_skews(path: str | Path, skews: Sequence[FeatureSkew], at_s: float) -> None:
    """Write the result of a skew check (read by the metrics collector)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"at": at_s, "features": [asdict(s) for s in skews]}))


def load_skews(path: str | Path) -> tuple[float, list[FeatureSkew]] | None:
    """The last saved skew check ``(at_s, skews)``, or None."""
    try:
        data = json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return float(data["at"]), [FeatureSkew(**s) for s in data["features"]]
