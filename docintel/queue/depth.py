"""How many messages wait in each broker queue (Redis), for metrics and operators."""

from __future__ import annotations

from docintel.queue.app import CPU_QUEUE, GPU_QUEUE, PRIORITY_LEVELS
from docintel.settings import Settings


def queue_lengths(settings: Settings) -> dict[str, int]:
    """Messages per queue, summed over its priority lists.

    kombu's Redis transport keeps priority 0 under the queue's own name and
    priority n under ``<queue>:<n>`` (the separator set in the app's config).
    """
    import redis

    client = redis.Redis.from_url(settings.broker_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        with client.pipeline(transaction=False) as pipe:
            queues = (CPU_QUEUE, GPU_QUEUE)
            for queue in queues:
                pipe.llen(queue)
                for level in range(1, PRIORITY_LEVELS):
                    pipe.llen(f"{queue}:{level}")
            counts = pipe.execute()
    finally:
        client.close()
    n = PRIORITY_LEVELS
    return {q: sum(counts[i * n : (i + 1) * n]) for i, q in enumerate(queues)}
