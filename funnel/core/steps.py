"""Named wall-clock steps of a long job (a training run), recorded only while someone listens.

Code marks its phases with :func:`step`; nothing is kept unless a caller wraps the job in
:func:`recording` (a benchmark, a progress display). Steps nest: a step opened inside another is
recorded under its path (``"candidate/ranking/ranker fit"``); a step entered several times adds
up. The recorder lives in a context variable, so concurrent jobs in other threads do not mix.

Example:
    >>> with recording() as steps:
    ...     with step("datasets"):
    ...         pass
    ...     for name in ("als", "content"):
    ...         with step("sources"), step(f"fit {name}"):
    ...             pass
    >>> list(steps.seconds)
    ['datasets', 'sources/fit als', 'sources', 'sources/fit content']
    >>> steps.calls["sources"]
    2
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class StepTimes:
    """Seconds and entry counts per step path, in the order each path first finished."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    _stack: list[str] = field(default_factory=list, repr=False)

    def add(self, path: str, seconds: float) -> None:
        """Count one finished entry of ``path``."""
        self.seconds[path] = self.seconds.get(path, 0.0) + seconds
        self.calls[path] = self.calls.get(path, 0) + 1

    def rows(self) -> list[dict[str, object]]:
        """``step`` (indented by depth), ``path``, ``seconds``, ``calls`` per path, parents first."""
        order = sorted(self.seconds, key=lambda p: [list(self.seconds).index(q) for q in _prefixes(p)])
        return [
            {
                "step": "  " * p.count("/") + p.rsplit("/", 1)[-1],
                "path": p,
                "seconds": round(self.seconds[p], 3),
                "calls": self.calls[p],
            }
            for p in order
        ]


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


_ACTIVE: ContextVar[StepTimes | None] = ContextVar("funnel_steps", default=None)


@contextmanager
def recording() -> Iterator[StepTimes]:
    """Record every :func:`step` run inside the ``with`` block (in this context) into the yielded object."""
    times = StepTimes()
    token = _ACTIVE.set(times)
    try:
        yield times
    finally:
        _ACTIVE.reset(token)


@contextmanager
def step(name: str) -> Iterator[None]:
    """Time the block as ``name`` (under the steps open around it) when a recording is active."""
    times = _ACTIVE.get()
    if times is None:
        yield
        return
    times._stack.append(name)
    path = "/".join(times._stack)
    started = time.perf_counter()
    try:
        yield
    finally:
        times._stack.pop()
        times.add(path, time.perf_counter() - started)
