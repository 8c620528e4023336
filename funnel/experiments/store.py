"""Experiments of a data directory: one versioned JSON file, changed under a file lock.

``<data_dir>/experiments.json`` holds every experiment ever created, running or stopped::

    {"format": "funnel.experiments", "version": 1, "experiments": [
      {"name": "mmr-0.5", "salt": "mmr-0.5", "status": "started", "ramp": 10.0,
       "arms": [{"name": "control", "weight": 1.0, "overrides": {}},
                {"name": "mmr", "weight": 1.0, "overrides": {"rerank": {"mmr_lambda": 0.5}}}],
       "revision": 2, "created_ms": 1718000000000, "stopped_ms": null,
       "ramps": [[1718000000000, 10.0]]}]}

Plain JSON (no pickle), written to a temporary file and renamed over the old one, so a reader sees
the old or the new file, never half of one. Every change bumps the experiment's ``revision``: a
worker applying changes from the entity feed keeps the highest (:meth:`ExperimentRecord.newer_than`).

The life cycle: :meth:`ExperimentStore.create` starts an experiment (at most one runs at a time:
the response names one arm); :meth:`~ExperimentStore.ramp` changes the share of users in it
(ramping up only adds users, each keeps their arm); :meth:`~ExperimentStore.stop` ends it for good
(a new run needs a new name, so its events are never mixed with the old run's). Arms and weights
never change once created: new weights would move users between arms.

Example:
    >>> import tempfile
    >>> store = ExperimentStore(Path(tempfile.mkdtemp()) / FILE_NAME)
    >>> rec = store.create({"name": "e1", "arms": [{"name": "a"}, {"name": "b"}], "ramp": 10}, now_ms=1)
    >>> rec.experiment.salt, rec.revision, store.ramp("e1", 50, now_ms=2).ramps
    ('e1', 1, ((1, 10.0), (2, 50.0)))
    >>> store.create({"name": "e2", "arms": [{"name": "a"}, {"name": "b"}]})
    Traceback (most recent call last):
    ...
    funnel.core.errors.ConflictError: experiment 'e1' is running: stop it first (one experiment at a time)
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from funnel.core.errors import ConflictError, CorruptDataError, NotFoundError, ValidationError
from funnel.experiments.assignment import Experiment
from funnel.experiments.overrides import ArmOverrides

FILE_NAME = "experiments.json"
FORMAT, VERSION = "funnel.experiments", 1
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Experiment names: they appear in URLs and on the command line."""
_META = ("revision", "created_ms", "stopped_ms", "ramps")


@dataclass(frozen=True)
class ExperimentRecord:
    """An experiment with its validated arm overrides and its history.

    Attributes:
        experiment: Name, salt, arms, status and ramp (what assignment reads).
        overrides: One :class:`ArmOverrides` per arm, in arm order.
        revision: Bumped by every change. created_ms: When it started. stopped_ms: When it stopped.
        ramps: ``(epoch ms, ramp %)`` of the start and of every ramp change.
    """

    experiment: Experiment
    overrides: tuple[ArmOverrides, ...]
    revision: int
    created_ms: int
    stopped_ms: int | None = None
    ramps: tuple[tuple[int, float], ...] = ()

    @property
    def name(self) -> str:
        """The experiment's name."""
        return self.experiment.name

    @property
    def running(self) -> bool:
        """True while users are assigned (status ``started``)."""
        return self.experiment.status == "started"

    def newer_than(self, other: ExperimentRecord | None) -> bool:
        """Whether this is a later state of the same experiment than ``other`` (or ``other`` is None)."""
        return other is None or self.revision > other.revision

    def overrides_of(self, arm: str) -> ArmOverrides:
        """The overrides of arm ``arm``."""
        return self.overrides[self.experiment.arm_names.index(arm)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; :meth:`from_dict` reads it back."""
        out = self.experiment.to_dict()
        for arm, over in zip(out["arms"], self.overrides, strict=True):
            arm["overrides"] = over.to_dict()
        out.update(revision=self.revision, created_ms=self.created_ms, stopped_ms=self.stopped_ms)
        out["ramps"] = [[ms, ramp] for ms, ramp in self.ramps]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentRecord:
        """Validate a stored (or fed) record; a bad field raises :class:`ValidationError` naming it."""
        if not isinstance(data, Mapping):
            raise ValidationError("must be an object", field="experiment")
        experiment = Experiment.from_dict({k: v for k, v in data.items() if k not in _META})
        overrides = tuple(
            ArmOverrides.from_dict(arm.overrides, f"arms[{i}].overrides")
            for i, arm in enumerate(experiment.arms)
        )
        revision, created = data.get("revision"), data.get("created_ms")
        stopped, ramps = data.get("stopped_ms"), data.get("ramps", [])
        for key, value in (("revision", revision), ("created_ms", created)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValidationError("must be a non-negative integer", field=key)
        if stopped is not None and (not isinstance(stopped, int) or isinstance(stopped, bool)):
            raise ValidationError("must be an integer or null", field="stopped_ms")
        try:
            history = tuple((int(ms), float(ramp)) for ms, ramp in ramps)
        except (TypeError, ValueError):
            raise ValidationError("must be a list of [epoch ms, ramp] pairs", field="ramps") from None
        return cls(experiment, overrides, revision, created, stopped, history)  # type: ignore[arg-type]


class ExperimentStore:
    """The experiments file of a data directory; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, ExperimentRecord]:
        """Every experiment by name (none when the file does not exist yet)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorruptDataError(f"{self.path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise CorruptDataError(f"{self.path} is not a funnel experiments file")
        if doc.get("version") != VERSION:
            raise ConflictError(
                f"{self.path} has format version {doc.get('version')!r}; this funnel reads {VERSION}"
            )
        records = {}
        for i, raw in enumerate(doc.get("experiments", [])):
            try:
                record = ExperimentRecord.from_dict(raw)
            except ValidationError as exc:
                raise CorruptDataError(f"{self.path}: experiments[{i}]: {exc}") from exc
            records[record.name] = record
        return records

    def create(self, config: Mapping[str, Any], now_ms: int | None = None) -> ExperimentRecord:
        """Start a new experiment from ``config`` (name, arms, optional salt (default: the name), ramp).

        Raises :class:`ValidationError` for a bad config, :class:`ConflictError` when the name is
        taken or another experiment is running.
        """
        if not isinstance(config, Mapping):
            raise ValidationError("must be an object", field="experiment")
        if "status" in config:
            raise ValidationError("is set by start and stop, not in the config", field="status")
        name = config.get("name")
        if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
            raise ValidationError(f"must match {NAME_PATTERN}", field="name")
        now = _now(now_ms)
        fields = {"salt": name, "ramp": 100.0, **config, "status": "started"}
        record = ExperimentRecord.from_dict({**fields, "revision": 1, "created_ms": now})
        record = replace(record, ramps=((now, float(record.experiment.ramp)),))

        def change(records: dict[str, ExperimentRecord]) -> ExperimentRecord:
            if name in records:
                status = records[name].experiment.status
                raise ConflictError(f"experiment {name!r} exists ({status}); a new run needs a new name")
            for other in records.values():
                if other.running:
                    raise ConflictError(
                        f"experiment {other.name!r} is running: stop it first (one experiment at a time)"
                    )
            return record

        return self._change(change)

    def ramp(self, name: str, ramp: float, now_ms: int | None = None) -> ExperimentRecord:
        """Set the percentage of users in running experiment ``name`` (404 unknown, 409 stopped)."""
        now = _now(now_ms)

        def change(records: dict[str, ExperimentRecord]) -> ExperimentRecord:
            record = _running(records, name, "ramp")
            experiment = record.experiment.with_ramp(ramp)  # validates the ramp (field "ramp")
            ramps = (*record.ramps, (now, float(experiment.ramp)))
            return replace(record, experiment=experiment, revision=record.revision + 1, ramps=ramps)

        return self._change(change)

    def stop(self, name: str, now_ms: int | None = None) -> ExperimentRecord:
        """Stop experiment ``name`` for good: nobody is assigned any more (404 unknown, 409 stopped)."""
        now = _now(now_ms)

        def change(records: dict[str, ExperimentRecord]) -> ExperimentRecord:
            record = _running(records, name, "stop")
            stopped = replace(record.experiment, status="stopped")
            return replace(record, experiment=stopped, revision=record.revision + 1, stopped_ms=now)

        return self._change(change)

    def _change(self, change: Callable[[dict[str, ExperimentRecord]], ExperimentRecord]) -> ExperimentRecord:
        with self._locked():
            records = self.load()
            record = change(records)
            records[record.name] = record
            self._write(records)
        return record

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock across processes (API workers share the data directory)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write(self, records: dict[str, ExperimentRecord]) -> None:
        doc = {"format": FORMAT, "version": VERSION, "experiments": [r.to_dict() for r in records.values()]}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _running(records: dict[str, ExperimentRecord], name: str, action: str) -> ExperimentRecord:
    record = records.get(name)
    if record is None:
        raise NotFoundError(f"no experiment {name!r}")
    if not record.running:
        raise ConflictError(f"cannot {action} experiment {name!r}: it is stopped")
    return record


def _now(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else int(now_ms)
