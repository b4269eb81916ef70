"""Webhooks: a signed POST to each target when a document reaches a final status.

- ``events``: which deliveries a finished run creates, and their payload;
- ``signing``: the HMAC-SHA256 signature receivers verify;
- ``targets``: which URLs may be called (no loopback, private or link-local
  addresses unless allowed), and the address to connect to;
- ``delivery``: one attempt, recorded on its row, and when to try again.

Kept free of imports at package level: settings import ``targets`` to check
the configured URLs.
"""
