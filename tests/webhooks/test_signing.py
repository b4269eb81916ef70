"""The webhook signature: what receivers compute, and what they must refuse."""

from __future__ import annotations

import hashlib
import hmac

from docintel.webhooks.signing import sign, verify

SECRET = "whsec-test"
BODY = b'{"event":"done"}'
NOW = 1_765_000_000


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"sha256={expected}"


def test_a_valid_signature_verifies() -> None:
    assert verify(SECRET, str(NOW), BODY, sign(SECRET, NOW, BODY), now=NOW + 10)


def test_a_changed_body_timestamp_or_secret_is_refused() -> None:
    signature = sign(SECRET, NOW, BODY)
    assert not verify(SECRET, str(NOW), b'{"event":"failed"}', signature, now=NOW)
    assert not verify(SECRET, str(NOW + 1), BODY, signature, now=NOW)
    assert not verify("another-secret", str(NOW), BODY, signature, now=NOW)
    assert not verify(SECRET, "not-a-number", BODY, signature, now=NOW)


def test_an_old_request_is_refused_even_with_its_valid_signature() -> None:
    signature = sign(SECRET, NOW, BODY)
    assert verify(SECRET, str(NOW), BODY, signature, now=NOW + 299)
    assert not verify(SECRET, str(NOW), BODY, signature, now=NOW + 301)
    assert not verify(SECRET, str(NOW), BODY, signature, now=NOW - 301)  # from the future
