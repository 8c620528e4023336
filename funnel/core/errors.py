"""The error taxonomy: a few error classes, each mapped to one HTTP status and one CLI exit code.

Every error funnel raises on purpose is a :class:`FunnelError`. The HTTP layer and the CLI map
them in one place (:data:`HTTP_STATUS`, :func:`exit_code`); anything else is an internal error.

Example:
    >>> err = ValidationError("must be finite", field="value", row=12)
    >>> str(err)
    'value (row 12): must be finite'
    >>> http_status(err), exit_code(err)
    (422, 2)
"""

from __future__ import annotations


class FunnelError(Exception):
    """Base class of every error funnel raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(FunnelError):
    """Bad input: names the offending ``field`` and, for tabular input, the ``row`` (1-based line)."""

    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, row: int | None = None) -> None:
        where = field or ""
        if row is not None:
            where = f"{where} (row {row})" if where else f"row {row}"
        super().__init__(f"{where}: {message}" if where else message)
        self.field = field
        self.row = row
        self.reason = message


class ConfigError(FunnelError):
    """A setting, URL or option that cannot work (unknown backend scheme, bad path, ...)."""

    code = "config"


class NotFoundError(FunnelError):
    """A named thing (user, item, model version, data directory) does not exist."""

    code = "not_found"


class ConflictError(FunnelError):
    """The request contradicts state that already exists (e.g. a format version we cannot read)."""

    code = "conflict"


class ResourceLimitError(FunnelError):
    """The request would exceed a configured limit (memory, catalogue size, batch size)."""

    code = "too_large"


class NotTrainedError(FunnelError):
    """A model or engine is asked to serve before it was trained."""

    code = "not_trained"


class UnavailableError(FunnelError):
    """A backing service (Redis, the event log, ...) cannot be reached right now."""

    code = "unavailable"


class CorruptDataError(FunnelError):
    """Persisted data failed an integrity check (checksum, torn record, bad format version)."""

    code = "corrupt"


HTTP_STATUS: dict[type[FunnelError], int] = {
    ValidationError: 422,
    ConfigError: 400,
    NotFoundError: 404,
    ConflictError: 409,
    ResourceLimitError: 413,
    NotTrainedError: 503,
    UnavailableError: 503,
    CorruptDataError: 500,
}


def http_status(error: BaseException) -> int:
    """Return the HTTP status for ``error``: its class's entry, else 500 for anything unknown."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]  # type: ignore[index]
    return 500


def exit_code(error: BaseException) -> int:
    """Return the CLI exit code: 2 for input the user can fix, 1 for everything else."""
    if isinstance(error, ValidationError | ConfigError | NotFoundError | ResourceLimitError):
        return 2
    return 1
