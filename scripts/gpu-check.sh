#!/usr/bin/env bash
# The GPU check: a ~154M-parameter Qwen2 with amft's character tokenizer is built into a local folder, then
# AMFT trains it in bf16 on GeneralPoints-L (compact template) on one GPU, plainly and under FSDP2 with one
# process (configs/accelerate/fsdp.yaml): 40 SFT warm-up steps, then 30 main-phase steps with a meta step
# every 5. Each run prints, and writes as JSON, its step times and peak GPU memory by kind of step (sft,
# mixed, meta) and mu after each step (scripts/gpu_check.py); the whole output also goes to gpu-check.log.
#
#   bash scripts/gpu-check.sh [OUTPUT_DIR]     # default: runs/gpu-check
#
# Packages the machine lacks come from .whl/ when that folder exists (scripts/gpu-wheels.sh fills it).
set -uo pipefail
cd "$(dirname "$0")/.."

check() {
    local out="$1" work
    work="$(mktemp -d /tmp/gpu-check.XXXXXX)"
    if [ -d .whl ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl || return
        export PYTHONPATH=/tmp/site:$PWD/src
        # Requirements of the carried wheels that the machine's own packages do not meet (none expected).
        python3 -m pip check 2>&1 | grep -iE '^(trl|transformers|datasets|dill|multiprocess) '
    else
        export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
    fi
    export HF_HUB_OFFLINE=1 TRL_EXPERIMENTAL_SILENCE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

    python3 scripts/gpu_check.py build --model-dir "$work/model" || return
    local failed=0
    python3 scripts/gpu_check.py train --model-dir "$work/model" --label plain --out "$out" || failed=1
    python3 -m accelerate.commands.launch --config_file configs/accelerate/fsdp.yaml --num_processes 1 \
        scripts/gpu_check.py train --model-dir "$work/model" --label fsdp2 --out "$out" || failed=1
    python3 scripts/gpu_check.py summary --out "$out"
    return "$failed"
}

out="${1:-runs/gpu-check}"
mkdir -p "$out"
check "$out" 2>&1 | tee "$out/gpu-check.log"
