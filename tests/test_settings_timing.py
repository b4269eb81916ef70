"""Queue timings that would make running work be sent twice are reported."""

from __future__ import annotations

from docintel.settings import Settings


def test_the_defaults_are_consistent() -> None:
    assert Settings(_env_file=None).timing_problems() == []


def test_a_sweeper_faster_than_the_task_limit_is_no_longer_a_problem() -> None:
    # Running work holds a renewed lease: the sweep never re-sends it, however short
    # the safety net is.
    settings = Settings(_env_file=None, task_time_limit_s=600, stuck_after_s=300)
    assert settings.timing_problems() == []


def test_a_short_visibility_timeout_is_reported() -> None:
    settings = Settings(
        _env_file=None, task_time_limit_s=600, stuck_after_s=900, visibility_timeout_s=600
    )
    (problem,) = settings.timing_problems()
    assert problem.startswith("DOCINTEL_VISIBILITY_TIMEOUT_S (600)")
