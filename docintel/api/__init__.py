"""The HTTP API (FastAPI). It imports no engine and no torch: it stores uploads,
queues their work and reads results; workers do the processing."""
