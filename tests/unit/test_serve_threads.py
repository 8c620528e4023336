"""``limit_blas_threads``: serving processes cap their BLAS pools (see funnel.api.server)."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from funnel.api import server
from funnel.core.errors import ConfigError


def _blas_threads() -> set[int]:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


@pytest.fixture()
def restore_limits():
    with threadpool_limits(limits=None):  # snapshot, restored on exit
        original = _blas_threads()
        yield original
        server._BLAS_LIMITS.clear()
        threadpool_limits(limits={p["prefix"]: p["num_threads"] for p in threadpool_info()})


def test_default_caps_every_blas_pool_at_one(monkeypatch, restore_limits):
    np.ones((4, 4)) @ np.ones((4, 4))  # numpy's BLAS is loaded
    monkeypatch.delenv("FUNNEL_BLAS_THREADS", raising=False)
    assert server.limit_blas_threads() == 1
    assert _blas_threads() == {1}


def test_explicit_count_and_zero_keeps_defaults(monkeypatch, restore_limits):
    monkeypatch.setenv("FUNNEL_BLAS_THREADS", "0")
    before = _blas_threads()
    assert server.limit_blas_threads() == 0
    assert _blas_threads() == before
    monkeypatch.setenv("FUNNEL_BLAS_THREADS", "2")
    assert server.limit_blas_threads() == 2
    assert _blas_threads() == {2}


@pytest.mark.parametrize("raw", ["-1", "two", "1.5"])
def test_bad_setting_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("FUNNEL_BLAS_THREADS", raw)
    with pytest.raises(ConfigError, match="FUNNEL_BLAS_THREADS must be an integer >= 0"):
        server.limit_blas_threads()
