"""Entry point of a GPU worker: queue ``gpu``, one process per GPU (weights load once)."""

from docintel.queue.worker import start_worker

if __name__ == "__main__":
    start_worker(queues=["gpu"], concurrency=1)
