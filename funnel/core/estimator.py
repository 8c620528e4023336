"""Estimator plumbing shared by models and retrieval sources: parameters, repr, fitted state.

Hyper-parameters are the ``__init__`` arguments, stored under the same names; learned state ends
in ``_`` and ``n_items_`` marks a fitted estimator.

Example:
    >>> class Model(Estimator):
    ...     def __init__(self, alpha: float = 0.5) -> None:
    ...         self.alpha = alpha
    >>> Model(alpha=2.0), Model().is_fitted
    (Model(alpha=2.0), False)
"""

from __future__ import annotations

import inspect
from typing import Any


class Estimator:
    """Mixin: ``get_params`` from the ``__init__`` signature, a readable ``repr``, ``is_fitted``."""

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters given to ``__init__`` (what ``save`` writes to the manifest)."""
        params = inspect.signature(type(self).__init__).parameters.values()
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {p.name: getattr(self, p.name) for p in params if p.name != "self" and p.kind in named}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` (or ``load``) has run."""
        return hasattr(self, "n_items_")
