#!/usr/bin/env bash
# GPU engine benchmark in one command (issue 18): hf vs fast ms/step at batch 1, 8, 32 for a random
# musicgen-small-sized model in bf16, audio s per wall s, peak GPU memory, 300 s vs 30 s, and the
# medium-sized model at batch 1 and 8 if time allows. Needs only the repo (weights are random, built
# on the GPU); about 5 minutes on an H100/H200. Figures go to gpu-results.md (in $OUT when set).
#   bash benchmarks/gpu.sh                 # CUDA
#   bash benchmarks/gpu.sh --device cpu    # smoke test with the tiny model (tests/test_gpu_benchmark.py)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null || python3 -m pip install -q uv
exec uv run --locked --extra worker python benchmarks/gpu.py "$@"
