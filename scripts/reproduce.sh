#!/usr/bin/env bash
# Regenerates every figure of docs/RESULTS.md with jee's own commands, on real data available
# on this machine (scikit-learn digits; Fashion-MNIST from `apt-get install dataset-fashion-mnist`).
# Every network is trained with its config's default (the adaptive recipe for Fashion-MNIST,
# the paper's one stage for digits), and each early-exit network with the other recipe too. On the 2-core CPU it was written on:
# about 75 minutes of training (two runs at a time), 10 of reports and 50 of benchmarks and
# load tests (the ResNet-110 streaming passes over 40 batches take 12); see docs/RESULTS.md.
#
#   bash scripts/reproduce.sh [RUNS_DIR]      (default runs/results)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/results}
R20=configs/fashion_mnist_eenet20.py
E8=configs/fashion_mnist_eenet8.py
CASCADE=configs/fashion_mnist_cascade.py

# Training, in two streams: on 2 cores two runs side by side finish sooner than one after the
# other (the small convolutions of these networks do not keep both cores busy). Each stream's
# log is in $RUNS/logs.
mkdir -p "$RUNS/logs"
train() {  # WORKDIR, then train.py's arguments
  local run=$1; shift
  python train.py "$@" --config.progress=False --workdir "$RUNS/$run"
}
(
  # The cascade's members; tiny and large are also the plain backbones of EENet-8 and of the
  # ResNet-20 EENet (the same networks and recipe without exits, on all training images).
  for m in large small tiny; do train "fm_cascade/$m" --config "$CASCADE:$m"; done
  train fm_eenet8_onestage --config "$E8:onestage"
) > "$RUNS/logs/train_a.log" 2>&1 &
stream_a=$!
(
  train fm_eenet20 --config "$R20"
  train fm_eenet8 --config "$E8"
  train digits --config configs/digits.py
  train digits_plain --config configs/digits.py --config.model.num_exits=0
  train digits_adaptive --config configs/digits.py:adaptive
  train fm_eenet20_onestage --config "$R20:onestage"
) > "$RUNS/logs/train_b.log" 2>&1 &
stream_b=$!
wait $stream_a || { echo "training stream A failed: see $RUNS/logs/train_a.log"; exit 1; }
wait $stream_b || { echo "training stream B failed: see $RUNS/logs/train_b.log"; exit 1; }
echo "training done"

# Policies fitted and selected on validation (5-fold cross-fitting), scored on test:
# report.json, budgets.json, comparison.json and the plots.
python evaluate.py --config configs/digits.py --workdir "$RUNS/digits"
python evaluate.py --config "$E8" --workdir "$RUNS/fm_eenet8"
python evaluate.py --config "$R20" --workdir "$RUNS/fm_eenet20"
python evaluate.py --config "$CASCADE" --config.cascade.root="$RUNS/fm_cascade"

# Wall-clock speed-ups of the inference modes. The learned exit policy first (each run
# overwrites eval/benchmark.json, so it is copied), then the EENet rule at T=0.5.
python evaluate.py --config "$R20" --workdir "$RUNS/fm_eenet20" --benchmark --policy bolukbasi \
  --target_cost 0.5 --modes full,masked,bucketed,host
cp "$RUNS/fm_eenet20/eval/benchmark.json" "$RUNS/fm_eenet20/eval/benchmark_bolukbasi_0.5.json"
python evaluate.py --config configs/digits.py --workdir "$RUNS/digits" --benchmark
python evaluate.py --config "$E8" --workdir "$RUNS/fm_eenet8" --benchmark
python evaluate.py --config "$R20" --workdir "$RUNS/fm_eenet20" --benchmark
# Five rounds of passes: at three, one operating point's reference passes ran 15% faster than
# the other points' in the same run.
python evaluate.py --config "$CASCADE" --config.cascade.root="$RUNS/fm_cascade" \
  --benchmark --repeats 5 --modes full,masked,bucketed,stream
python evaluate.py --config configs/cifar10_eenet110.py --workdir "$RUNS/bench110_b256" \
  --benchmark --random_init --batch_size 256 --target_cost 0.5 --repeats 5 --eager_examples 8

# Streaming early exit over whole passes (a dataset section), each into benchmark_stream.json.
stream() {  # RUN, then evaluate.py's arguments
  local run=$1; shift
  local eval_dir="$RUNS/$run/eval"
  if [ -f "$eval_dir/benchmark.json" ]; then cp "$eval_dir/benchmark.json" "$eval_dir/keep.json"; fi
  python evaluate.py "$@" --workdir "$RUNS/$run" --benchmark --repeats 3 \
    --modes full,masked,bucketed,stream
  mv "$eval_dir/benchmark.json" "$eval_dir/benchmark_stream.json"
  if [ -f "$eval_dir/keep.json" ]; then mv "$eval_dir/keep.json" "$eval_dir/benchmark.json"; fi
}
stream bench110_b256 --config configs/cifar10_eenet110.py --random_init --batch_size 256 \
  --target_cost 0.5
stream fm_eenet8 --config "$E8"
# The default recipe's EENet-8 sends every example to its last exit: the one-stage recipe's
# exits are where the stream has early exits to batch.
stream fm_eenet8_onestage --config "$E8:onestage"
stream fm_eenet20 --config "$R20"

# Serving: 16 client threads sending requests of 8 test images.
python scripts/load_test.py --config "$E8" --workdir "$RUNS/fm_eenet8" \
  --out "$RUNS/fm_eenet8/eval/load_test.json"
python scripts/load_test.py --config "$E8:onestage" --workdir "$RUNS/fm_eenet8_onestage" \
  --out "$RUNS/fm_eenet8_onestage/eval/load_test.json"
python scripts/load_test.py --config "$R20" --workdir "$RUNS/fm_eenet20" \
  --out "$RUNS/fm_eenet20/eval/load_test.json"

python scripts/results_doc.py "$RUNS" > docs/RESULTS.generated.md
echo "wrote docs/RESULTS.generated.md"
