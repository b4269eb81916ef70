"""Entry point of a CPU worker: queue ``cpu``, one process per core (it also sweeps, in turn)."""

from docintel.queue.worker import start_worker

if __name__ == "__main__":
    start_worker(queues=["cpu"], concurrency=None)
