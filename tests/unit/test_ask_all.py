"""ask_all: pooled calls within the deadline, inline calls in the caller's thread after them."""

from __future__ import annotations

import threading
import time

from funnel.retrieval.concurrent import ask_all


def test_inline_calls_run_in_the_callers_thread_after_the_pooled_ones() -> None:
    order: list[tuple[str, int]] = []

    def pooled() -> str:
        time.sleep(0.02)
        order.append(("pooled", threading.get_ident()))
        return "ann"

    def cheap() -> str:
        order.append(("cheap", threading.get_ident()))
        return "trending"

    got, late, errors = ask_all({"ann": pooled, "trending": cheap}, deadline_ms=1000, inline=["trending"])
    assert got == {"ann": "ann", "trending": "trending"} and late == [] and errors == {}
    assert [name for name, _ in order] == ["pooled", "cheap"]  # no overlap: no GIL contention
    assert order[1][1] == threading.get_ident() != order[0][1]


def test_inline_calls_past_the_deadline_are_dropped_and_failures_recorded() -> None:
    def slow_pooled() -> str:
        time.sleep(0.3)
        return "late"

    def boom() -> str:
        raise RuntimeError("store down")

    got, late, errors = ask_all(
        {"ann": slow_pooled, "trending": lambda: "t", "editorial": boom},
        deadline_ms=50,
        inline=["trending", "editorial"],
    )
    assert got == {}
    assert sorted(late) == ["ann", "trending"]  # the inline one ran after the deadline had passed
    assert errors == {"editorial": "RuntimeError: store down"}


def test_without_inline_every_call_is_pooled() -> None:
    main = threading.get_ident()
    got, late, _ = ask_all({"a": threading.get_ident, "b": threading.get_ident}, deadline_ms=1000)
    assert late == [] and main not in got.values()
