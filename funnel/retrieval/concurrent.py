"""Ask retrieval sources concurrently, each within a deadline; late sources are dropped, not waited for.

The serving path (``Retriever(deadline_ms=...)``) submits every source's ``retrieve`` to a shared
thread pool, then collects them until the deadline (sources marked
:class:`~funnel.retrieval.source.AskedInline` run in the request's own thread after that): a
source that has not answered by then contributes nothing to this request (its name lands in
``late``), and its thread finishes in the background. Threads pay off because the heavy parts of
sources (FAISS search, sparse products, NumPy) release the GIL; a source that raises is dropped
likewise, with its error.

Example:
    >>> import time
    >>> def fast(): return "fast list"
    >>> def slow(): time.sleep(0.5); return "slow list"
    >>> got, late, errors = ask_all({"a": fast, "b": slow}, deadline_ms=100)
    >>> got, late, errors
    ({'a': 'fast list'}, ['b'], {})
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

T = TypeVar("T")
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="funnel-source")


def ask_all(
    calls: Mapping[str, Callable[[], T]], deadline_ms: float, inline: Collection[str] = ()
) -> tuple[dict[str, T], list[str], dict[str, str]]:
    """Run ``calls`` concurrently; returns (answers by name, late names, errors by name).

    ``inline`` names calls run in the caller's thread once the pooled ones have answered (or
    the deadline passed): cheap in-memory ones. Run beside the pooled calls they would contend
    with them for the GIL, which cost more than their own work; late ones are dropped all the same.
    """
    started = time.perf_counter()
    futures = {name: _POOL.submit(call) for name, call in calls.items() if name not in inline}
    got: dict[str, T] = {}
    late: list[str] = []
    errors: dict[str, str] = {}
    for name, future in futures.items():
        remaining = deadline_ms / 1000 - (time.perf_counter() - started)
        try:
            got[name] = future.result(timeout=max(0.0, remaining))
        except FutureTimeout:
            late.append(name)
        except Exception as exc:  # a failing source must not fail the request
            errors[name] = f"{type(exc).__name__}: {exc}"
    for name, call in calls.items():
        if name not in inline:
            continue
        try:
            answer = call()
        except Exception as exc:  # a failing source must not fail the request
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        if (time.perf_counter() - started) * 1000 > deadline_ms:
            late.append(name)
        else:
            got[name] = answer
    return got, late, errors
