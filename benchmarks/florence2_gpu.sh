#!/usr/bin/env bash
# Florence-2 checks on a CUDA machine that cannot reach the model hub.
#
#   OUT=/tmp/f2gpu benchmarks/florence2_gpu.sh
#
# In priority order, each step under its own time limit so a slow one costs
# only itself: the engine tests on the GPU (the tiny checkpoint: batching,
# padding, scripted answers, the out-of-memory path, region detection), the
# benchmark at the published Florence-2-large and -base shapes (scripted
# weights: real compute and memory, see benchmarks/florence2_bench.py),
# greedy against 3 beams, a real CUDA out-of-memory (the process capped at a
# small share of the card; the engine must halve its batch, not fail), the
# worst-case memory of a batch (answers near the 1024-token limit), and the
# tiny-model table. The limits add up to 590 s: one device call of 600 s. The
# large-shape checkpoint takes ~35 s to build and load in each step.
# Everything it prints also goes to $OUT/florence2_gpu.log.
set -uo pipefail
OUT=${OUT:-/tmp/florence2-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TQDM_DISABLE=1
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
BENCH="$PY benchmarks/florence2_bench.py --device $DEVICE --no-isolate"
TESTS="tests/engines/florence2/test_ocr_engine.py tests/engines/florence2/test_detector.py"
PYTEST="$PY -m pytest -q -p no:cacheprovider --confcutdir=tests/engines"

step() {  # step SECONDS TITLE COMMAND...
    local limit=${STEP_LIMIT:-$1} title=$2  # STEP_LIMIT: a quick dry run
    shift 2
    echo
    echo "## $title"
    local start=$SECONDS
    timeout "$limit" "$@"
    echo "(exit $?, $((SECONDS - start)) s)"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
    $PY -c 'import flash_attn; print("flash-attn", flash_attn.__version__)' 2>/dev/null ||
        echo "flash-attn: not installed (sdpa is used)"

    step 60 "engine tests on CUDA, float32" \
        env DOCINTEL_TEST_DEVICE=$DEVICE DOCINTEL_TEST_DTYPE=float32 $PYTEST $TESTS
    step 120 "Florence-2-large shape, bfloat16, greedy, ~600-token answers" \
        $BENCH --arch large --answer-tokens 600 --dtypes bfloat16 --batch-sizes 8,24 --pages 4
    step 100 "Florence-2-large shape, 3 beams (the official examples' setting)" \
        $BENCH --arch large --answer-tokens 600 --dtypes bfloat16 --batch-sizes 24 --pages 4 \
        --num-beams 3
    step 80 "real out-of-memory: large shape capped at 3% of the card, batch 48, 3 beams" \
        $BENCH --arch large --answer-tokens 300 --dtypes bfloat16 --batch-sizes 48 --pages 8 \
        --num-beams 3 --memory-fraction 0.03
    step 100 "Florence-2-large shape, worst case: ~1000-token answers, 48 tiles in one batch" \
        $BENCH --arch large --answer-tokens 1000 --dtypes bfloat16 --batch-sizes 48 --pages 8
    step 50 "Florence-2-base shape, ~600-token answers" \
        $BENCH --arch base --answer-tokens 600 --dtypes bfloat16 --batch-sizes 24 --pages 4
    step 30 "tiny scripted model (machinery only)" \
        $BENCH --dtypes bfloat16,float32 --batch-sizes 1,8,32 --pages 4
    step 50 "engine tests on CUDA, bfloat16" \
        env DOCINTEL_TEST_DEVICE=$DEVICE DOCINTEL_TEST_DTYPE=bfloat16 $PYTEST $TESTS
} 2>&1 | tee "$OUT/florence2_gpu.log"
