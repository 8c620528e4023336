"""``HotSwapper``: a server moves to a newly promoted version without a restart or a failed request.

The registry's ``LIVE`` pointer is the one source of truth (:mod:`funnel.training.registry`);
``funnel models promote``, a rollback or the worker's training change it. The service calls
:meth:`HotSwapper.check` before every request (a read of ``LIVE`` at most every ``poll_s``);
when it names another version than the one served, a background thread

1. loads that version's bundle completely (:meth:`~funnel.engine.Engine.load_pipeline`: model,
   retrieval indexes, ranker, feature store) and folds in the event log up to its end — while
   the requests keep being served by the version held, under their own versions;
2. lets the service prepare it (``prepare``: catalogue items added since its training, items
   unlisted since), still outside the serving lock;
3. under the serving lock: folds in the few events logged meanwhile, applies what the service
   learned meanwhile (``finish``) and swaps the reference (:meth:`~funnel.engine.Engine.swap`).

A request holds the serving lock while it ranks, so a request in flight finishes on the version
it started with and names it; the next one gets the new version. A version that fails to load
(a corrupt bundle) is logged and counted, the old one keeps serving, and the load is retried
after ``retry_s``. Memory peaks at two loaded versions during a swap.

Example:
    >>> import tempfile, threading, pyarrow as pa
    >>> from funnel.engine import Engine
    >>> eng = Engine(tempfile.mkdtemp())
    >>> _ = eng.import_interactions(pa.table({"user_id": ["u1", "u2"], "item_id": ["a", "b"],
    ...                                      "timestamp": [1_700_000_000, 1_700_000_001]}))
    >>> v1 = eng.train(model="pop").version
    >>> swapper = HotSwapper(eng, threading.RLock(), poll_s=0.0)
    >>> eng.pipeline().bundle.version == v1
    True
    >>> v2 = eng.train(model="pop", force=True).version
    >>> swapper.check(), swapper.wait(30), eng.pipeline().bundle.version == v2
    ('loading', True, True)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from funnel.engine import Engine
from funnel.pipeline import Pipeline

log = logging.getLogger(__name__)
Hook = Callable[[Pipeline], None]


class HotSwapper:
    """Loads the version ``LIVE`` names in the background and swaps it in; see the module docstring.

    Args:
        engine: the served engine; its ``reload_live`` is turned off (this class swaps instead).
        lock: the serving lock (held by requests while they use the pipeline).
        prepare: called on the loaded pipeline outside the lock; ``finish`` under it, before the swap.
        on_swap: called under the lock after the swap with the new pipeline.
        poll_s: least time between two reads of ``LIVE``; retry_s: wait after a failed load.
    """

    def __init__(
        self,
        engine: Engine,
        lock: AbstractContextManager[Any],
        prepare: Hook | None = None,
        finish: Hook | None = None,
        on_swap: Hook | None = None,
        poll_s: float = 0.2,
        retry_s: float = 30.0,
    ) -> None:
        engine.reload_live = False
        self.engine, self.lock, self.poll_s, self.retry_s = engine, lock, poll_s, retry_s
        self.prepare, self.finish, self.on_swap = prepare, finish, on_swap
        self._state = threading.Lock()
        self._loading: threading.Thread | None = None
        self._next_check = 0.0
        self._failed: dict[str, float] = {}
        self.swaps = 0
        self.failures = 0
        self.last_load_s: float | None = None

    def check(self) -> str:
        """Start loading the live version if it is not the one served; returns what it did.

        ``idle`` (nothing to do or not time to look), ``loading`` (a load runs), ``retry later``
        (this version failed to load less than ``retry_s`` ago). Never blocks on a load.
        """
        now = time.monotonic()
        with self._state:
            if self._loading is not None:
                return "loading"
            if now < self._next_check:
                return "idle"
            self._next_check = now + self.poll_s
            try:
                live = self.engine.registry.live()
            except OSError as exc:  # an unreadable pointer must not fail the request: look again later
                log.warning("cannot read the LIVE pointer: %s", exc)
                return "idle"
            held = self.engine._pipeline
            if live is None or held is None or held.bundle.version == live:
                return "idle"
            if now < self._failed.get(live, -1.0):
                return "retry later"
            thread = threading.Thread(target=self._load, args=(live,), name="funnel-hot-swap", daemon=True)
            self._loading = thread
            thread.start()
            return "loading"

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running load to end; False when it is still running after ``timeout``."""
        thread = self._loading
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _load(self, version: str) -> None:
        started = time.perf_counter()
        try:
            pipeline = self.engine.load_pipeline(version)  # complete, caught up: the slow part, unlocked
            if self.prepare is not None:
                self.prepare(pipeline)
            with self.lock:
                self.engine.catch_up(pipeline)  # what was logged while it loaded
                if self.finish is not None:
                    self.finish(pipeline)
                previous = self.engine.swap(pipeline)
                if self.on_swap is not None:
                    self.on_swap(pipeline)
            self.swaps += 1
            self.last_load_s = time.perf_counter() - started
            old = previous.bundle.version if previous is not None else None
            log.warning("serving model version %s (was %s; loaded in %.1fs)", version, old, self.last_load_s)
        except Exception:
            self.failures += 1
            self._failed[version] = time.monotonic() + self.retry_s
            log.exception("loading model version %s failed; still serving the version held", version)
        finally:
            with self._state:
                self._loading = None
