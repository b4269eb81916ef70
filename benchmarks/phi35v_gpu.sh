#!/usr/bin/env bash
# Phi-3.5-vision checks on a CUDA machine that cannot reach the model hub.
#
#   OUT=/tmp/phi35v-gpu benchmarks/phi35v_gpu.sh
#
# In priority order, each step under its own time limit: the golden and engine
# tests on the GPU (the tiny checkpoints: batching with left padding and crop
# counts per region, scripted answers, repair, the out-of-memory path), then the
# full-size model with random weights (real compute and memory, see
# benchmarks/phi35v_speed.py) in bf16 with sdpa and, when flash-attn imports,
# flash_attention_2, at 4, 9 and 16 crops, batches of 1 and 8. The limits add up
# to 560 s: one device call of 600 s. Everything printed also goes to
# $OUT/phi35v_gpu.log.
set -uo pipefail
OUT=${OUT:-/tmp/phi35v-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TQDM_DISABLE=1
PY=${PYTHON:-python3}
SPEED="$PY -m benchmarks.phi35v_speed --device cuda --dtype bfloat16 --crops 4 9 16 --batch 1 8"

step() {  # step SECONDS TITLE COMMAND...
    local limit=${STEP_LIMIT:-$1} title=$2
    shift 2
    echo
    echo "## $title"
    local start=$SECONDS
    timeout "$limit" "$@"
    echo "(exit $?, $((SECONDS - start)) s)"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
    step 120 "engine tests on the GPU (fp32)" env DOCINTEL_TEST_DEVICE=cuda \
        $PY -m pytest -q -p no:cacheprovider tests/engines/phi35v/test_engine.py
    step 60 "engine tests on the GPU (bf16)" env DOCINTEL_TEST_DEVICE=cuda DOCINTEL_TEST_DTYPE=bfloat16 \
        $PY -m pytest -q -p no:cacheprovider tests/engines/phi35v/test_engine.py -k "scripted or repair"
    step 180 "full size, sdpa" $SPEED --attn sdpa
    if $PY -c 'import flash_attn' 2>/dev/null; then
        step 200 "full size, flash_attention_2" $SPEED --attn flash_attention_2
    else
        echo "flash-attn not installed: flash_attention_2 not measured"
    fi
} 2>&1 | tee "$OUT/phi35v_gpu.log"
