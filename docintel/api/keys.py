"""API keys: random secrets shown once; only their SHA-256 is stored.

A key reads ``di_<prefix>_<secret>``. The prefix finds the row without
scanning, and the hash comparison is constant-time, so neither the response
time nor an error message tells an attacker how much of a key was right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from docintel.models import ApiKey
from docintel.models.base import utcnow

_PREFIX_BYTES = 4  # 8 hex characters


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, name: str) -> str:
    """A new key; the only time its secret exists outside the caller's hands."""
    prefix = secrets.token_hex(_PREFIX_BYTES)
    key = f"di_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(name=name, prefix=prefix, key_hash=_hash(key)))
    session.flush()
    return key


def verify_key(session: Session, key: str) -> bool:
    """True for a key that exists and is not revoked; notes when it was used."""
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "di":
        return False
    digest = _hash(key)
    candidates = session.scalars(
        select(ApiKey).where(ApiKey.prefix == parts[1], ApiKey.revoked_at.is_(None))
    ).all()
    for row in candidates:
        if hmac.compare_digest(row.key_hash, digest):
            row.last_used_at = utcnow()
            return True
    return False


def list_keys(session: Session) -> list[KeyInfo]:
    rows = session.scalars(select(ApiKey).order_by(ApiKey.id))
    return [
        KeyInfo(r.id, r.name, r.prefix, r.created_at, r.last_used_at, r.revoked_at) for r in rows
    ]


def revoke_key(session: Session, ref: str) -> int:
    """Revoke the keys whose id or prefix is ``ref``; how many were revoked."""
    query = select(ApiKey).where(ApiKey.revoked_at.is_(None))
    prefix = ref.removeprefix("di_").split("_")[0]
    # A prefix is 8 hex digits and may be all digits (about one key in 40): read
    # that as a prefix, not as an id; ids are the short numbers `apikey list` shows.
    if len(prefix) == 2 * _PREFIX_BYTES and all(c in "0123456789abcdef" for c in prefix):
        query = query.where(ApiKey.prefix == prefix)
    elif ref.isdigit():
        query = query.where(ApiKey.id == int(ref))
    else:
        return 0
    rows = session.scalars(query).all()
    for row in rows:
        row.revoked_at = utcnow()
    return len(rows)
