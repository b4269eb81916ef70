"""The signature on every webhook: HMAC-SHA256 over the timestamp and the body.

``X-Docintel-Signature: sha256=<hex>`` where the HMAC (keyed with
``DOCINTEL_WEBHOOK_SECRET``) covers ``f"{timestamp}.{body}"`` and the timestamp
is ``X-Docintel-Timestamp`` (Unix seconds). Signing the timestamp with the body
lets a receiver refuse a captured request replayed later: it checks the
signature, then that the timestamp is recent.
"""

from __future__ import annotations

import hashlib
import hmac
import time

EVENT_HEADER = "X-Docintel-Event"
DELIVERY_HEADER = "X-Docintel-Delivery"
TIMESTAMP_HEADER = "X-Docintel-Timestamp"
SIGNATURE_HEADER = "X-Docintel-Signature"

_SCHEME = "sha256="
DEFAULT_TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Docintel-Signature`` value for ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode() + b"." + body
    return _SCHEME + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent.

    Compared in constant time, so the answer's timing tells nothing about the
    expected signature.
    """
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature)
