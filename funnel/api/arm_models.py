"""``ArmModels``: the model versions experiment arms name, loaded beside the live one in an API worker.

An arm whose overrides name ``model_version`` is served by that registered version's pipeline
instead of the LIVE one (its head weights and re-ranking settings, if any, apply to that
pipeline). The arm is *pinned*: when ``LIVE`` moves (promote, rollback, the worker's retrain; hot
swap in :mod:`funnel.api.hot_swap`) the arms without a version follow it, the pinned arm does not.

* **Start** (:meth:`ArmModels.start`, the admin ``POST /v1/experiments``): every named version is
  checked — it exists, the gate did not reject it, at most :data:`MAX_ARM_VERSIONS` distinct
  versions per experiment — and loaded (:meth:`~funnel.engine.Engine.load_pipeline`, caught up
  with the event log) *before* the experiment is written; a failure is a
  :class:`~funnel.core.errors.ValidationError` naming ``arms.<i>.overrides.model_version`` (422)
  and nothing starts. A version named by two arms is loaded once.
* **Other workers** learn of the experiment from the entity feed; :meth:`ArmModels.sync` then
  loads the versions in a background thread. A request of a pinned arm waits for that load at
  most ``wait_s``; a version that cannot be loaded there is logged, the arm is served by the live
  version meanwhile (the response's ``model_version`` says so) and the load is retried after
  ``retry_s``.
* **Kept current** like the live pipeline: the service folds every event it folds into the live
  pipeline into each arm pipeline (:meth:`ArmModels.catch_up`: the same records when both were at
  the same offset, else a read of their own) and applies the entity feed's new items and listings
  to them too (:meth:`ArmModels.loaded`).
* **Stop** (:meth:`ArmModels.stop`, or a stop from the feed): the pipelines are dropped.

Memory: one loaded bundle per named version, beside the live one (and a second live one during a
hot swap). A version equal to the live one is loaded once more: the arm stays on it when LIVE moves.

Example:
    >>> import tempfile, threading, pyarrow as pa
    >>> from funnel.api.entity_feed import open_entity_feed
    >>> from funnel.api.experiments import ExperimentBook
    >>> from funnel.engine import Engine
    >>> eng = Engine(tempfile.mkdtemp(), served_feature_sample=0)
    >>> _ = eng.import_interactions(pa.table({"user_id": ["u1", "u2"], "item_id": ["a", "b"],
    ...                                      "timestamp": [1_700_000_000, 1_700_000_001]}))
    >>> v1 = eng.train(model="pop").version
    >>> arms = ArmModels(eng, ExperimentBook(eng.data_dir, open_entity_feed("memory://")), threading.RLock())
    >>> pinned = {"name": "b", "overrides": {"model_version": v1}}
    >>> rec = arms.start({"name": "e", "arms": [{"name": "a"}, pinned]})
    >>> arms.pipeline_for(v1).bundle.version == v1, arms.pipeline_for(v1) is eng.pipeline(catch_up=False)
    (True, False)
    >>> _ = arms.stop("e"); arms.loaded()
    []
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from funnel.api.experiments import ExperimentBook
from funnel.core.errors import FunnelError, NotFoundError, ValidationError
from funnel.engine import Engine
from funnel.events.protocol import LogRecord
from funnel.experiments.store import ExperimentRecord
from funnel.pipeline import Pipeline

log = logging.getLogger(__name__)
Hook = Callable[[Pipeline], None]
MAX_ARM_VERSIONS = 2
"""Default bound on the distinct model versions one experiment's arms may name (each is a loaded bundle)."""


class ArmModels:
    """The pipelines of the model versions the running experiment's arms name; see the module docstring.

    Args:
        engine: the served engine (its registry and event log).
        book: the worker's experiments (:class:`~funnel.api.experiments.ExperimentBook`).
        lock: the serving lock: arm pipelines change under it, as the live one does.
        prepare: called on a loaded pipeline outside the lock; ``finish`` under it, before it serves.
        max_versions: distinct versions one experiment may name. wait_s: how long a request waits for
            a load in progress. retry_s: wait after a failed background load.
    """

    def __init__(
        self,
        engine: Engine,
        book: ExperimentBook,
        lock: AbstractContextManager[Any],
        prepare: Hook | None = None,
        finish: Hook | None = None,
        max_versions: int = MAX_ARM_VERSIONS,
        wait_s: float = 30.0,
        retry_s: float = 30.0,
    ) -> None:
        self.engine, self.book, self.lock = engine, book, lock
        self.prepare, self.finish = prepare, finish
        self.max_versions, self.wait_s, self.retry_s = max_versions, wait_s, retry_s
        self._state = threading.Lock()
        self._held: dict[str, Pipeline] = {}
        self._loading: dict[str, threading.Thread] = {}
        self._failed: dict[str, float] = {}
        self._starting: dict[str, Pipeline] = {}
        self._needed: set[str] = set()
        self.failures = 0

    # ---- the admin path ----------------------------------------------------------------------

    def check(self, config: Mapping[str, Any]) -> dict[str, str]:
        """The versions ``config``'s arms name -> the field naming each first; raises on a bad one."""
        arms = config.get("arms") if isinstance(config, Mapping) else None
        named: dict[str, str] = {}
        for i, arm in enumerate(arms if isinstance(arms, Sequence) else []):
            overrides = arm.get("overrides") if isinstance(arm, Mapping) else None
            version = overrides.get("model_version") if isinstance(overrides, Mapping) else None
            if version is None or version in named:
                continue
            where = f"arms.{i}.overrides.model_version"
            try:
                manifest = self.engine.registry.manifest(version)
            except (NotFoundError, ValidationError) as exc:
                reason = exc.reason if isinstance(exc, ValidationError) else exc.message
                raise ValidationError(reason, field=where) from None
            if manifest.status == "rejected":
                why = f" ({manifest.reason})" if manifest.reason else ""
                raise ValidationError(
                    f"model version {version!r} was rejected by the gate{why}; name a version that was "
                    "not (`funnel models list`), or promote this one with force first",
                    field=where,
                )
            if len(named) == self.max_versions:
                raise ValidationError(
                    f"at most {self.max_versions} distinct model versions per experiment (each is a "
                    f"bundle loaded in every API worker beside the live one); {version!r} would be "
                    f"number {self.max_versions + 1}",
                    field=where,
                )
            named[version] = where
        return named

    def start(self, config: Mapping[str, Any]) -> ExperimentRecord:
        """Check and load the versions ``config`` names, then start the experiment (422 naming the field).

        The loads happen before the experiment is written: a version that cannot be loaded starts
        nothing. When starting fails afterwards (409: another experiment runs), they are dropped.
        """
        named = self.check(config)
        loaded: dict[str, Pipeline] = {}
        for version, where in named.items():
            try:
                loaded[version] = self._load(version)
            except Exception as exc:
                message = exc.message if isinstance(exc, FunnelError) else f"{type(exc).__name__}: {exc}"
                raise ValidationError(
                    f"model version {version!r} cannot be loaded: {message}", field=where
                ) from exc
        with self._state:  # not loaded a second time by a sync seeing the experiment before it is held
            self._starting = dict(loaded)
        try:
            record = self.book.start(config)
            with self._state:
                self._needed = set(named)
                self._held.update(loaded)
        finally:
            with self._state:
                self._starting = {}
        return record

    def stop(self, name: str) -> ExperimentRecord:
        """Stop experiment ``name`` and drop the pipelines its arms named."""
        record = self.book.stop(name)
        self.sync()
        return record

    # ---- every worker ------------------------------------------------------------------------

    def sync(self) -> None:
        """Follow the running experiment: drop versions no arm names any more, load new ones (background)."""
        running = self.book.running()
        overrides = () if running is None else running.overrides
        needed = {o.model_version for o in overrides if o.model_version is not None}
        now = time.monotonic()
        with self._state:
            self._needed = needed
            for version in [v for v in self._held if v not in needed]:
                del self._held[version]
                log.warning("model version %s unloaded: no running experiment arm names it", version)
            for version in needed - set(self._held) - set(self._loading) - set(self._starting):
                if now < self._failed.get(version, -1.0):
                    continue
                thread = threading.Thread(
                    target=self._background, args=(version,), name="funnel-arm-model", daemon=True
                )
                self._loading[version] = thread
                thread.start()

    def pipeline_for(self, version: str, wait: bool = True) -> Pipeline | None:
        """The loaded pipeline of ``version`` (waiting up to ``wait_s`` for a load in progress), or None.

        ``wait=False`` never waits (a load in progress gives None): the caller holds the serving
        lock, which the load needs.
        """
        with self._state:
            held, loading = self._held.get(version), self._loading.get(version)
        if held is None and loading is not None and wait:
            loading.join(self.wait_s)
            with self._state:
                held = self._held.get(version)
        return held

    def loaded(self) -> list[Pipeline]:
        """The arm pipelines held now (the service applies entity changes to each, under the lock)."""
        with self._state:
            return list(self._held.values())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background loads running now; False when one still runs after ``timeout``."""
        with self._state:
            threads = list(self._loading.values())
        for thread in threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in threads)

    def catch_up(self, records: Sequence[LogRecord], start: int, end: int) -> None:
        """Under the serving lock: fold the log up to ``end`` into every arm pipeline.

        ``records`` are the ones the live pipeline just folded in (offsets ``start`` to ``end``); an
        arm pipeline at ``start`` takes them as they are, one elsewhere reads its own.
        """
        for pipeline in self.loaded():
            if pipeline.read_offset == start and end > start:
                pipeline.observe(records)
                pipeline.read_offset = end
            elif pipeline.read_offset < end:
                self.engine.catch_up(pipeline, end)

    # ---- loading -----------------------------------------------------------------------------

    def _load(self, version: str) -> Pipeline:
        """``version``'s pipeline, caught up with the log and the service's catalogue changes."""
        pipeline = self.engine.load_pipeline(version)
        if self.prepare is not None:
            self.prepare(pipeline)
        with self.lock:
            self.engine.catch_up(pipeline)
            if self.finish is not None:
                self.finish(pipeline)
        return pipeline

    def _background(self, version: str) -> None:
        try:
            pipeline = self._load(version)
        except Exception:
            self.failures += 1
            with self._state:
                self._failed[version] = time.monotonic() + self.retry_s
            log.exception("loading model version %s for an arm failed; the arm is served live", version)
        else:
            with self._state:
                if version in self._needed:
                    self._held[version] = pipeline
                    log.warning("model version %s loaded for an experiment arm", version)
        finally:
            with self._state:
                self._loading.pop(version, None)
