# CPU worker: ingest, render, text layer, finalize, and RapidOCR when no GPU is used.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends poppler-utils libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY docintel ./docintel
COPY migrations ./migrations
COPY workers ./workers
# No torch: the CPU path (text layer, RapidOCR on onnxruntime, CPU tables) needs none.
RUN pip install --no-cache-dir .
ENV DOCINTEL_DATA_DIR=/data
CMD ["python", "workers/cpu_worker.py"]
