# GPU worker: Florence-2 OCR and region detection (queue "gpu"), one process per GPU.
#
# The CUDA toolkit's major version must match the one torch was built with, or
# flash-attn will not compile: the PyPI torch 2.13.0 wheel is built for CUDA 13.0
# (it depends on cuda-toolkit 13.0.x), hence a CUDA 13.0 devel image (nvcc).
# For another torch build, change both together, e.g.
#   --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-devel-ubuntu24.04 \
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# flash-attn has no wheel on PyPI: it is compiled here (MAX_JOBS bounds the
# compiler's memory, ~4 GB per job) unless its setup finds a prebuilt wheel.
# WITH_FLASH_ATTN=0 builds an image without it (the engine then uses sdpa).
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-devel-ubuntu24.04
FROM ${CUDA_IMAGE}
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://pypi.org/simple
ARG WITH_FLASH_ATTN=1
ARG MAX_JOBS=4
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev poppler-utils libgl1 libglib2.0-0 git build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /venv
ENV PATH=/venv/bin:$PATH
WORKDIR /app
# torch first, then flash-attn without build isolation (its setup.py imports
# torch, which an isolated build environment does not have), then the package:
# its `gpu` extra (flash-attn, accelerate) is then already satisfied.
RUN pip install --no-cache-dir --upgrade pip setuptools wheel packaging ninja psutil \
    && pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
    && if [ "${WITH_FLASH_ATTN}" = "1" ]; then \
        MAX_JOBS="${MAX_JOBS}" pip install --no-cache-dir --no-build-isolation "flash-attn>=2.6" \
        && python -c "import flash_attn; print('flash-attn', flash_attn.__version__)"; \
    fi
COPY pyproject.toml README.md alembic.ini ./
COPY docintel ./docintel
COPY migrations ./migrations
COPY workers ./workers
RUN if [ "${WITH_FLASH_ATTN}" = "1" ]; then \
        pip install --no-cache-dir '.[gpu]'; \
    else \
        pip install --no-cache-dir '.[models]' 'accelerate>=1.0'; \
    fi
# Weights are never downloaded at run time: mount a checkpoint directory
# (compose mounts ./models at /models) and set DOCINTEL_OCR_MODEL to it, or
# give HF_HOME (on the /data volume) a hub cache holding the checkpoint.
ENV DOCINTEL_DATA_DIR=/data \
    DOCINTEL_OCR_ENGINE=florence2 \
    HF_HOME=/data/hf \
    HF_HUB_OFFLINE=1
CMD ["python", "workers/gpu_worker.py"]
