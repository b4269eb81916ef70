"""Stage latencies into the histogram buckets behind ``docintel_stage_seconds``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from docintel.models import StageLatency

# Seconds: a text-layer page takes milliseconds, an OCR'd scan on a CPU tens of
# seconds, a table read by a VLM on a CPU minutes.
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, math.inf)


def record_stage_times(session: Session, timings: Iterable[dict[str, Any] | None]) -> None:
    """Add each page's stage timings to the histogram, in the caller's transaction."""
    tally: dict[tuple[str, float], list[float]] = {}
    for entry in timings:
        for stage, seconds in (entry or {}).items():
            value = float(seconds)
            le = next(b for b in BUCKETS if value <= b)
            counts = tally.setdefault((stage, le), [0, 0.0])
            counts[0] += 1
            counts[1] += value
    if not tally:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    rows = [
        {"stage": stage, "le": le, "count": int(n), "sum_seconds": total}
        for (stage, le), (n, total) in sorted(tally.items())  # one lock order for all writers
    ]
    insert = dialect.insert(StageLatency).values(rows)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["stage", "le"],
            set_={
                "count": StageLatency.count + insert.excluded.count,
                "sum_seconds": StageLatency.sum_seconds + insert.excluded.sum_seconds,
            },
        )
    )
