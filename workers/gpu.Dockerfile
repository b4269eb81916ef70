# GPU worker: Florence-2 OCR and region detection (queue "gpu"), one process per GPU.
FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev poppler-utils libgl1 libglib2.0-0 git build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /venv
ENV PATH=/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY docintel ./docintel
COPY migrations ./migrations
COPY workers ./workers
RUN pip install --no-cache-dir torch==2.13.0 \
    && pip install --no-cache-dir '.[gpu]' \
    # flash-attn compiles against the installed torch and CUDA: no build isolation.
    && pip install --no-cache-dir --no-build-isolation flash-attn
ENV DOCINTEL_DATA_DIR=/data \
    DOCINTEL_OCR_ENGINE=florence2 \
    HF_HUB_OFFLINE=1
CMD ["python", "workers/gpu_worker.py"]
