"""The Celery layer: thin tasks that take IDs, call one stage, commit, enqueue the next."""
