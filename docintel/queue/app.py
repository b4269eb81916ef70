"""The Celery application, configured from docintel settings.

With no broker configured the same tasks run eagerly in this process
(embedded mode); with Redis they go to ``cpu`` and ``gpu`` workers.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from docintel.pipeline.routing import CPU, GPU
from docintel.queue.signals import install as install_signals
from docintel.settings import Settings, get_settings

CPU_QUEUE, GPU_QUEUE = CPU, GPU
# One Redis list per priority step (kombu's priority_steps).
PRIORITY_LEVELS = 10


def configure(app: Celery, settings: Settings) -> None:
    app.conf.update(
        broker_url=settings.broker_url or "memory://",
        task_always_eager=settings.embedded,
        # Failures are recorded on the document/page by our task base class; eager
        # mode must not re-raise them into the caller.
        task_eager_propagates=False,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_time_limit=settings.task_time_limit_s,
        # The soft limit leaves the stage time to give its work back: 30 s, or a fifth
        # of a short limit (a 5 s limit with a 1 s soft one would stop every page).
        task_soft_time_limit=max(
            1, settings.task_time_limit_s - min(30, settings.task_time_limit_s // 5)
        ),
        worker_prefetch_multiplier=1,
        broker_transport_options={
            # Redelivery of a message whose worker died: must exceed the task time
            # limit, or long pages would be delivered twice while still running.
            "visibility_timeout": settings.visibility_timeout_s,
            # One Redis list per priority, 0 popped first (docintel.pipeline.priority);
            # the default steps would fold the ten levels into four.
            "priority_steps": list(range(PRIORITY_LEVELS)),
            "sep": ":",
        },
        broker_connection_retry_on_startup=True,
        task_default_queue=CPU_QUEUE,
        task_queues=[Queue(CPU_QUEUE), Queue(GPU_QUEUE)],
        worker_hijack_root_logger=False,
        beat_schedule={
            "scan-sources": {
                "task": "docintel.scan_sources",
                "schedule": settings.scan_interval_s,
                # Scans nobody ran in time are dropped, not piled up for a worker to
                # run back to back: the next one sees the same files.
                "options": {"queue": CPU_QUEUE, "expires": settings.scan_interval_s},
            }
        },
    )


app = Celery("docintel", include=["docintel.queue.tasks"])
configure(app, get_settings())
install_signals()
