#!/usr/bin/env bash
# Rebuild the three mixed-precision reference checkpoints from scratch: float training, bit allocation
# (Hessian-trace sensitivity + ILP), then quantization-aware training. Deterministic for a given
# machine and thread count (the shipped files were made with OMP_NUM_THREADS=1, three jobs in parallel
# on 2 cores). Then writes benchmarks/results/reference_models.{json,md}.
#   usage: bash scripts/build_reference_models.sh [lenet vgg resnet]
set -euo pipefail
cd "$(dirname "$0")/.."
FAMES=${FAMES:-.venv/bin/fames}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ASSETS=src/fames/assets/models
mkdir -p models "$ASSETS"

build_lenet() {
  $FAMES train --model lenet --epochs 15 -o models/lenet_float.safetensors
  $FAMES bits models/lenet_float.safetensors --bops 3.3e7 --avg-bits 2.5 --fix conv1=8 -o models/lenet_bits.json
  $FAMES train --from models/lenet_float.safetensors --bits models/lenet_bits.json --epochs 8 \
    -o $ASSETS/lenet_mp.safetensors
}
build_vgg() {
  $FAMES train --model vgg --epochs 8 -o models/vgg_float.safetensors
  $FAMES bits models/vgg_float.safetensors --bops 3e8 --avg-bits 3 --fix features.0=8 -o models/vgg_bits.json
  $FAMES train --from models/vgg_float.safetensors --bits models/vgg_bits.json --epochs 4 \
    -o $ASSETS/vgg_mp.safetensors
}
build_resnet() {
  $FAMES train --model resnet --epochs 8 -o models/resnet_float.safetensors
  $FAMES bits models/resnet_float.safetensors --bops 3.2e8 --avg-bits 3 --fix stem.0=8 -o models/resnet_bits.json
  $FAMES train --from models/resnet_float.safetensors --bits models/resnet_bits.json --epochs 4 \
    -o $ASSETS/resnet_mp.safetensors
}

for name in "${@:-lenet vgg resnet}"; do
  for n in $name; do "build_$n"; done
done
.venv/bin/python benchmarks/reference_models.py
