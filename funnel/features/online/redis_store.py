"""``RedisOnlineStore``: the online store on Redis hashes, one hash per feature key.

Key layout inside a namespace ``prefix`` (default ``funnel``; one per tenant, or per test):

- ``<prefix>:fs2:<entity>:<id>:<group>`` — a feature hash (``field -> float`` as text); the
  ``fs2`` is :data:`~funnel.features.online.protocol.KEY_FORMAT_VERSION` from :func:`feature_key`
  (item counters: ``<prefix>:fs2:bucket:<counter>|<res>:<start>:<group>``, one hash per bucket,
  field = item id, from :func:`~funnel.features.online.protocol.bucket_key`);
- ``<prefix>:dedup:<event_id>`` — ``1``, expiring ``dedup_ttl_s`` after the event was applied;
- ``<prefix>:meta`` — hash ``{key_format_version: 2}``, written by :meth:`RedisOnlineStore.create`.

Reads are one Lua script call (``EVALSHA``) doing ``HGETALL`` per key and answering one JSON text:
measured for 1 user + 1000 item keys on loopback, that is ~2-3x faster than a pipeline of
``HGETALL`` s, whose cost is redis-py parsing thousands of RESP elements in pure Python (see
``docs/redis-durability.md``, "Measured"). ``apply`` is one
``EVALSHA`` per chunk of events: per event, ``SET dedup:<id> 1 NX EX ttl`` and only if that set
the key, its ``HINCRBYFLOAT`` and ``EXPIRE`` calls — atomic per event (the whole script runs
atomically and, under AOF, is logged as one ``MULTI``/``EXEC``), idempotent by event id.

Fast path (the declared :data:`~funnel.features.online.protocol.FAST_PATH` capability):
``read_fields`` is one script call per chunk (keys and fields each sent as one argument): per
key ``HMGET`` of the fields, or ``HGETALL`` when the hash holds fewer entries than fields are
asked (the server's cost is per element moved between Redis and Lua, so a small open bucket
costs little however many candidates ask), answered as packed little-endian numbers
(``struct.pack``; Lua's ``tonumber`` and Python's ``float`` both round the stored text
correctly, so values are bit-identical to ``get_many``'s);
``apply_sums`` is ONE script call for a whole batch: it checks that no dedup key exists (else it
returns -1 having changed nothing), sets them all, then runs one ``HINCRBYFLOAT`` per summed
field and one ``EXPIRE`` per key.

Values: ``HINCRBYFLOAT`` adds in long double and prints at most 17 decimals, so integer counts
come back exact (``"3"`` -> ``3.0``) up to 2**53, while a non-integer sum can differ from the
memory store in its last bit and increments below ``1e-17`` vanish. A sum overflowing to
infinity makes Redis abort the script: the events before it in the chunk stay applied, that one
is left half-applied with its dedup key set (the memory store would store ``inf``); under
``apply_sums`` the whole chunk's dedup keys are set first, so such an abort leaves the chunk
partly applied. Keep features in range.

Example (needs a server, so not run as a doctest)::

    store = open_online_store("redis://127.0.0.1:6379/0?prefix=tenant-a")
    store.create()
    store.apply([("e1", [Increment(feature_key("user", "42", "activity"), "clicks", 1.0, 3600)])], 86400)
    store.get_many([feature_key("user", "42", "activity")])  # [{'clicks': 1.0}]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import redis

from funnel.core.errors import ConflictError, UnavailableError, ValidationError
from funnel.events.redis_log import unavailable
from funnel.features.online.memory import (
    check_batch,
    check_fields,
    check_keys,
    check_rows,
    check_sums,
    check_ttl,
)
from funnel.features.online.protocol import FAST_PATH, KEY_FORMAT_VERSION, Increment, KeySums
from funnel.features.online.redis_lua import APPLY_LUA, FIELDS_LUA, READ_LUA, SUMS_LUA

READ_CHUNK = 2000
"""Keys per read script call: bounds how long one call blocks the server (a few ms per 1000 keys)."""

_PAIR = np.dtype([("col", "<i4"), ("value", "<f8")])
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


class RedisOnlineStore:
    """An :class:`~funnel.features.online.protocol.OnlineStore` over Redis hashes.

    ``client``: a ``redis.Redis`` (bytes responses); ``prefix``: the namespace of every key;
    ``apply_chunk``: events per script call (bounds how long one call blocks the server).
    """

    capabilities = frozenset({FAST_PATH})
    """Declared optional capabilities (see :mod:`funnel.features.online.protocol`)."""

    def __init__(self, client: redis.Redis, prefix: str = "funnel", apply_chunk: int = 1000) -> None:
        if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix):
            raise ValidationError(
                f"must be a non-empty string without spaces, got {prefix!r}", field="prefix"
            )
        if apply_chunk <= 0:
            raise ValidationError("must be a positive number of events", field="apply_chunk")
        self._r = client
        self.prefix = prefix
        self.apply_chunk = apply_chunk
        self._apply = client.register_script(APPLY_LUA)
        self._read = client.register_script(READ_LUA)
        self._fields = client.register_script(FIELDS_LUA)
        self._sums = client.register_script(SUMS_LUA)
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisOnlineStore(prefix={self.prefix!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise UnavailableError("the online store is closed")

    # control plane
    def create(self) -> None:
        """Record the key format version in ``<prefix>:meta``; refuse a namespace of another."""
        self._check_open()
        meta = f"{self.prefix}:meta"
        with unavailable("online store create"):
            self._r.hsetnx(meta, "key_format_version", KEY_FORMAT_VERSION)
            found = self._r.hget(meta, "key_format_version")
        if found is None or int(found) != KEY_FORMAT_VERSION:
            raise ConflictError(
                f"namespace {self.prefix!r} holds key format version {found!r}, this funnel writes "
                f"{KEY_FORMAT_VERSION}; tear it down or use another prefix"
            )

    def teardown(self) -> int:
        """Delete every key of this namespace (``SCAN`` + ``UNLINK``, never ``FLUSHDB``); return how many."""
        self._check_open()
        deleted = 0
        pattern = self.prefix.translate(_GLOB_SPECIAL) + ":*"
        with unavailable("online store teardown"):
            batch: list[bytes] = []
            for key in self._r.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += self._r.unlink(*batch)
                    batch = []
            if batch:
                deleted += self._r.unlink(*batch)
        return deleted

    # data plane
    def get_many(self, keys: Sequence[str]) -> list[dict[str, float]]:
        """The hash of every key, in order (``{}`` for a missing or expired key).

        One script call per :data:`READ_CHUNK` keys, answered as one JSON text.
        """
        check_keys(keys)
        self._check_open()
        out: list[dict[str, float]] = []
        p = self.prefix
        for start in range(0, len(keys), READ_CHUNK):
            names = [f"{p}:{key}" for key in keys[start : start + READ_CHUNK]]
            with unavailable("online store read"):
                out += _hashes(self._read(keys=names))
        return out

    def read_many(
        self, keys: Sequence[str], field_keys: Sequence[str], fields: Sequence[str]
    ) -> tuple[list[dict[str, float]], np.ndarray]:
        """``(get_many(keys), read_fields(field_keys, fields))``: both scripts in one pipeline.

        One round trip when each fits one script call (else the two calls, one after the other).
        """
        check_keys(keys)
        check_keys(field_keys)
        check_fields(fields)
        self._check_open()
        distinct = list(dict.fromkeys(fields))
        names, wanted = "\n".join(field_keys) + "\n", "\n".join(distinct) + "\n"
        fits = all(0 < size <= READ_CHUNK for size in (len(keys), len(field_keys), len(distinct)))
        if not fits or names.count("\n") != len(field_keys) or wanted.count("\n") != len(distinct):
            return self.get_many(keys), self.read_fields(field_keys, fields)
        p = self.prefix
        with unavailable("online store read"):
            for attempt in (1, 2):
                pipe = self._r.pipeline(transaction=False)  # EVALSHA by hand: redis-py's Script
                pipe.evalsha(self._read.sha, len(keys), *(f"{p}:{k}" for k in keys))  # would check first
                pipe.evalsha(self._fields.sha, 0, f"{p}:", names, wanted)
                try:
                    raw, packed = pipe.execute()
                    break
                except redis.exceptions.NoScriptError:  # the server restarted: load them, once
                    if attempt == 2:
                        raise
                    self._r.script_load(self._read.script)
                    self._r.script_load(self._fields.script)
        block = np.zeros((len(field_keys), len(distinct)))
        _unpack_fields(packed, block)
        return _hashes(raw), _spread(block, distinct, fields)

    def read_fields(self, keys: Sequence[str], fields: Sequence[str]) -> np.ndarray:
        """``out[i, j]`` = field ``fields[j]`` of ``keys[i]`` (0.0 if missing); one call per chunk.

        Chunks of :data:`READ_CHUNK` keys times :data:`READ_CHUNK` distinct fields (Lua's stack
        bounds one ``HMGET``); a hash smaller than the field list is read whole, which costs
        the server less than looking every field up. A pipeline of ``HMGET`` s when a name holds
        a newline.
        """
        check_keys(keys)
        check_fields(fields)
        self._check_open()
        keys, p = list(keys), self.prefix
        distinct = list(dict.fromkeys(fields))
        out = np.zeros((len(keys), len(distinct)))
        for i in range(0, len(keys), READ_CHUNK):
            chunk = keys[i : i + READ_CHUNK]
            names = "\n".join(chunk) + "\n"
            for j in range(0, len(distinct), READ_CHUNK):
                cols = distinct[j : j + READ_CHUNK]
                wanted = "\n".join(cols) + "\n"
                block = out[i : i + len(chunk), j : j + len(cols)]
                with unavailable("online store read"):
                    if names.count("\n") == len(chunk) and wanted.count("\n") == len(cols):
                        _unpack_fields(self._fields(args=[f"{p}:", names, wanted]), block)
                        continue
                    pipe = self._r.pipeline(transaction=False)  # a name holds a newline
                    for key in chunk:
                        pipe.hmget(f"{p}:{key}", cols)
                    rows = pipe.execute()
                block[:] = [[0.0 if v is None else float(v) for v in r] for r in rows]
        return _spread(out, distinct, fields)

    def set_many(self, rows: Mapping[str, Mapping[str, float]], ttl_s: int | None = None) -> None:
        """Replace the hashes of ``rows`` in one ``MULTI``/``EXEC`` (an empty mapping deletes)."""
        clean, ttl = check_rows(rows), check_ttl(ttl_s)
        self._check_open()
        if not clean:
            return
        with unavailable("online store write"):
            pipe = self._r.pipeline(transaction=True)
            for key, fields in clean.items():
                name = f"{self.prefix}:{key}"
                pipe.delete(name)
                if fields:
                    pipe.hset(name, mapping={f: repr(v) for f, v in fields.items()})
                    if ttl is not None:
                        pipe.expire(name, ttl)
            pipe.execute()

    def apply(self, batch: Sequence[tuple[str, Sequence[Increment]]], dedup_ttl_s: int) -> int:
        """Apply ``(event_id, increments)`` pairs, each at most once per ``dedup_ttl_s``; return how many.

        One ``EVALSHA`` per :attr:`apply_chunk` events (the script is reloaded by redis-py after a
        server restart emptied the script cache).
        """
        check_batch(batch)
        dedup_ttl = check_ttl(dedup_ttl_s, "dedup_ttl_s", optional=False)
        self._check_open()
        applied = 0
        p = self.prefix
        for start in range(0, len(batch), self.apply_chunk):
            keys: list[str] = []
            args: list[str | int] = [dedup_ttl, 0]  # type: ignore[list-item]
            chunk = batch[start : start + self.apply_chunk]
            for event_id, increments in chunk:
                keys.append(f"{p}:dedup:{event_id}")
                args.append(len(increments))
                for inc in increments:
                    keys.append(f"{p}:{inc.key}")
                    args += (inc.field, repr(float(inc.amount)), "" if inc.ttl_s is None else inc.ttl_s)
            args[1] = len(chunk)
            with unavailable("online store apply"):
                applied += int(self._apply(keys=keys, args=args))
        return applied

    def apply_sums(self, event_ids: Sequence[str], sums: KeySums, dedup_ttl_s: int) -> int | None:
        """Apply ``sums`` for ``event_ids`` in ONE script call if all are new (else None, no change)."""
        check_sums(event_ids, sums)
        dedup_ttl = check_ttl(dedup_ttl_s, "dedup_ttl_s", optional=False)
        self._check_open()
        if len(set(event_ids)) != len(event_ids):
            return None
        p = self.prefix
        keys = [f"{p}:dedup:{e}" for e in event_ids]
        tokens: list[str] = []
        for key, (ttl, fields, amounts) in sums.items():
            keys.append(f"{p}:{key}")
            tokens += ("" if ttl is None else str(ttl), str(len(fields)))
            for name, amount in zip(fields, amounts, strict=True):
                tokens += (name, repr(float(amount)))
        payload, escaped = "\n".join(tokens) + "\n", "0"
        if payload.count("\n") != len(tokens) or "\\" in payload:  # a field holds a newline or \
            tokens = [t.replace("\\", "\\\\").replace("\n", "\\n") for t in tokens]
            payload, escaped = "\n".join(tokens) + "\n", "1"
        args = [dedup_ttl, len(event_ids), payload, escaped]
        with unavailable("online store apply"):
            done = int(self._sums(keys=keys, args=args))
        return None if done < 0 else done

    def close(self) -> None:
        """Close the connection pool; later calls raise ``UnavailableError``. Idempotent."""
        if not self._closed:
            self._closed = True
            self._r.close()


def _hashes(raw: bytes) -> list[dict[str, float]]:
    """The hashes of a ``READ_LUA`` answer (JSON: per key ``[field, value, ...]`` or ``{}``)."""
    return [{h[i]: float(h[i + 1]) for i in range(0, len(h), 2)} if h else {} for h in json.loads(raw)]


def _spread(out: np.ndarray, distinct: list[str], fields: Sequence[str]) -> np.ndarray:
    """``out`` (columns: ``distinct``) with one column per entry of ``fields`` (which may repeat)."""
    if len(distinct) == len(fields):
        return out
    at = {f: k for k, f in enumerate(distinct)}
    return out[:, [at[f] for f in fields]]


def _unpack_fields(raw: bytes, block: np.ndarray) -> None:
    """Fill ``block`` (keys x fields) from a ``FIELDS_LUA`` answer (see its docstring)."""
    pos, width = 0, block.shape[1]
    for row in block:
        m = int(np.frombuffer(raw, "<i4", 1, pos)[0])
        pos += 4
        if m < 0:
            row[:] = np.frombuffer(raw, "<f8", width, pos)
            pos += 8 * width
        elif m:
            pairs = np.frombuffer(raw, _PAIR, m, pos)
            row[pairs["col"]] = pairs["value"]
            pos += _PAIR.itemsize * m
