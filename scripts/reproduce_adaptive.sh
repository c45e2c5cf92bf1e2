#!/usr/bin/env bash
# The runs of the "Networks that adapt per example" tables of docs/RESULTS.md: Fashion-MNIST
# ResNet-20 and EENet-8 with the adaptive recipe (the configs' default), the one-stage recipe
# and pool heads for comparison, their plain backbones, the learned exit policy's report, and
# the tables (scripts/adaptive_table.py). On one H100 the eight trainings ran side by side in
# about 2 minutes (PARALLEL=8); on the 2-core CPU, two at a time, expect about 2.5 hours.
# The document's H100 table was made before the confidence branches read the softmax: add
# --config.model.confidence_inputs=features to the adaptive runs for it.
#
#   bash scripts/reproduce_adaptive.sh [RUNS_DIR]      (default runs/adaptive)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/adaptive}
PARALLEL=${PARALLEL:-2}
mkdir -p "$RUNS/logs"
R20=configs/fashion_mnist_eenet20.py
E8=configs/fashion_mnist_eenet8.py
jobs=(
  "fm_eenet20 --config $R20"
  "fm_eenet20_s1 --config $R20 --config.seed=1"
  "fm_eenet20_onestage --config $R20:onestage"
  "fm_eenet20_pool --config $R20:pool"
  "fm_plain20 --config $R20 --config.model.num_exits=0"
  "fm_eenet8 --config $E8"
  "fm_eenet8_plainheads --config $E8:plain"
  "fm_plain8 --config $E8 --config.model.num_exits=0"
)
for job in "${jobs[@]}"; do
  set -- $job
  name=$1; shift
  while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do wait -n; done
  python train.py "$@" --config.progress=False --workdir "$RUNS/$name" \
    > "$RUNS/logs/$name.log" 2>&1 &
done
wait
python evaluate.py --config $R20 --workdir "$RUNS/fm_eenet20"
python evaluate.py --config $R20 --config.seed=1 --workdir "$RUNS/fm_eenet20_s1"
python scripts/adaptive_table.py --plain "r20=$RUNS/fm_plain20" --plain "e8=$RUNS/fm_plain8" \
  "r20/adaptive=$RUNS/fm_eenet20" "r20/adaptive, seed 1=$RUNS/fm_eenet20_s1" \
  "r20/one stage=$RUNS/fm_eenet20_onestage" "r20/adaptive, pool heads=$RUNS/fm_eenet20_pool" \
  "e8/adaptive (paper: pool heads)=$RUNS/fm_eenet8" \
  "e8/adaptive, plain heads=$RUNS/fm_eenet8_plainheads" --budgets
