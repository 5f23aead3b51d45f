"""The sticky split of a canary: a request's key hashed to a point of [0, 100).

A request whose point is below the canary's share is answered by the challenger. The point of a
key never changes during a rollout (the hash is salted with the rollout's id, so each rollout
draws its own slice of users), hence one user stays on one variant, every worker and every
server on the store agrees without talking to the others, and widening from 10 to 25 keeps the
users below 10 on the canary and adds those from 10 to 25.

The key: the header `key_header` (default X-Request-Key), else the value of the column
`key_field` in the request's first row; a request with neither is split at random (not sticky).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

SCALE = 2**64


def point(rollout_id: str, key: str) -> float:
    """Where `key` falls in [0, 100) for the rollout `rollout_id`."""
    digest = hashlib.blake2b(f"{rollout_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") * 100.0 / SCALE


def request_key(headers: Any, batch: Any, header: str, field: str | None) -> str | None:
    """The request's sticky key, or None."""
    value = headers.get(header)
    if value:
        return value
    if field and batch is not None and field in getattr(batch, "names", ()) and batch.rows:
        return str(batch.column(field)[0])
    return None


def on_canary(rollout_id: str, share: float, key: str | None) -> bool:
    if share <= 0:
        return False
    if share >= 100:
        return True
    where = point(rollout_id, key) if key is not None else random.random() * 100.0
    return where < share
