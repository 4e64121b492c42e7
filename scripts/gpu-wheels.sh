#!/usr/bin/env bash
# Downloads into .whl/ the wheels scripts/gpu-check.sh installs on the GPU machine (Python 3.12, x86_64, no
# package index). That machine has torch, accelerate 1.15, peft, huggingface_hub 1.33, tokenizers 0.23.2,
# safetensors 0.8, numpy, pandas, pyarrow, jinja2, psutil, regex, typer, xxhash; it lacks the packages below.
#   trl           AMFTTrainer is built on it
#   transformers  the machine has 5.17; amft needs 5.24
#   datasets      TRL and the training data
#   dill, multiprocess   datasets needs them (dill<0.4.2, multiprocess<0.70.20 needs dill>=0.4.1)
# Not carried: math-verify (the check runs GeneralPoints, which never imports it) and vLLM (its wheel, some
# hundreds of MiB, is too large to carry with the repository). Run from anywhere; the repository's git excludes .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(trl==1.16.0 transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19)

exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qxF /.whl/ "$exclude" 2>/dev/null || echo /.whl/ >>"$exclude"

rm -rf .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
du -ch .whl/*.whl
