"""Compiled tree scoring: each LightGBM head turned into native code with ``lleaves`` (LLVM).

LightGBM's own ``predict`` walks its trees through an interpreter; ``lleaves`` emits one function
per forest and lets LLVM compile it for the host CPU. On 1000 candidates x 69 features, single
threaded, a 150-tree x 31-leaf head scores about ten times faster (``benchmarks/bench_ranker.py``),
which is what brings four heads inside the ranking stage's 5 ms budget. The raw scores equal
LightGBM's ``raw_score=True`` to float64 rounding (the unit tests check it).

Compiling costs seconds per head, so the object code is cached on disk under a key made of the
model text, this module's :data:`COMPILED_FORMAT`, the ``lleaves`` and ``llvmlite`` versions and
the host CPU name and features: a model moved to another machine, or a new compiler, compiles
afresh instead of running stale code. The cache directory is ``FUNNEL_COMPILE_CACHE``, else
``$XDG_CACHE_HOME/funnel/compiled`` (``~/.cache/...``). Files are written to a temporary name and
renamed, so concurrent processes never read half an object. Loading one is loading native code,
never unpickling.

:func:`compile_heads` never raises: when ``lleaves`` is missing or compilation fails it returns
``None`` and the reason, and the ranker scores with LightGBM.

Example:
    >>> import lightgbm as lgb
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4)).astype(np.float32)
    >>> b = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7},
    ...               lgb.Dataset(X, (X[:, 0] > 0).astype(float)), 10)
    >>> heads, why = compile_heads({"like": b})
    >>> why
    ''
    >>> bool(np.allclose(heads.raw(X)["like"], b.predict(X, raw_score=True)))
    True
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

log = logging.getLogger(__name__)

COMPILED_FORMAT = 1
"""Version of the cached object layout; part of every cache key (bump it to drop old objects)."""


def cache_dir() -> Path:
    """Where compiled heads are cached (``FUNNEL_COMPILE_CACHE`` or the user's cache directory)."""
    env = os.environ.get("FUNNEL_COMPILE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "funnel" / "compiled"


def _host_key() -> str:
    """Compiler versions and the host CPU: what makes an object file valid to load here."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:
        features = ""
    versions = f"{metadata.version('lleaves')}|{metadata.version('llvmlite')}"
    return f"{COMPILED_FORMAT}|{versions}|{llvm.get_host_cpu_name()}|{features}"


class CompiledHeads:
    """Compiled heads: ``raw(X)`` gives each head's raw score, like ``Booster.predict(raw_score=True)``.

    Args:
        models: head -> compiled ``lleaves.Model``.
        n_features: the columns the models expect.
    """

    def __init__(self, models: Mapping[str, Any], n_features: int) -> None:
        self.models = dict(models)
        self.n_features = n_features

    def raw(self, X: np.ndarray, threads: int = 1) -> dict[str, np.ndarray]:
        """Each head's raw score per row (``float64``); ``threads`` 0 uses every core."""
        X = np.ascontiguousarray(X, dtype=np.float64)  # the compiled code reads float64 rows
        jobs = threads if threads > 0 else None
        return {head: m.predict(X, n_jobs=jobs) for head, m in self.models.items()}


def _compile_one(text: str, folder: Path | None, host: str) -> Any:
    """One model text compiled (raw scores), through the on-disk cache when ``folder`` is usable."""
    import lleaves

    with tempfile.TemporaryDirectory(prefix="funnel-lleaves-") as tmp:
        model_file = Path(tmp) / "model.txt"
        model_file.write_text(text)
        model = lleaves.Model(model_file=str(model_file))
        if folder is None:
            model.compile(raw_score=True)
            return model
        key = hashlib.sha256(f"{host}\n{text}".encode()).hexdigest()[:40]
        target = folder / f"{key}.o"
        if target.exists():
            model.compile(cache=str(target), raw_score=True)
            return model
        partial = Path(tmp) / "object.o"
        model.compile(cache=str(partial), raw_score=True)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            staged = folder / f".{key}.{os.getpid()}.tmp"
            staged.write_bytes(partial.read_bytes())
            staged.replace(target)
        except OSError as exc:  # a read-only cache only costs the next load a compile
            log.info("compiled ranker head not cached (%s)", exc)
        return model


def compile_heads(
    boosters: Mapping[str, lgb.Booster], folder: str | Path | None = None, cache: bool = True
) -> tuple[CompiledHeads | None, str]:
    """``(compiled heads, "")``, or ``(None, reason)`` when ``lleaves`` is missing or fails.

    ``folder``: the object cache (default :func:`cache_dir`); ``cache=False`` compiles every time.
    """
    try:
        import lleaves  # noqa: F401
    except ImportError as exc:
        return None, f"lleaves is not installed ({exc})"
    where = (Path(folder) if folder is not None else cache_dir()) if cache else None
    try:
        host = _host_key()
        models = {head: _compile_one(b.model_to_string(), where, host) for head, b in boosters.items()}
    except Exception as exc:  # any compiler failure: LightGBM still scores correctly
        return None, f"lleaves compilation failed: {type(exc).__name__}: {exc}"
    n_features = next(iter(boosters.values())).num_feature() if boosters else 0
    return CompiledHeads(models, n_features), ""
