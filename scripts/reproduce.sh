#!/usr/bin/env bash
# Regenerates every figure of docs/RESULTS.md with jee's own commands, on real data available
# on this machine (scikit-learn digits; Fashion-MNIST from `apt-get install dataset-fashion-mnist`).
# Runtime on the 2-core CPU it was written on: about 50 minutes (39 of them training, two runs
# at a time), plus about 12 for the streaming benchmarks; see docs/RESULTS.md.
#
#   bash scripts/reproduce.sh [RUNS_DIR]      (default runs/results)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/results}
FM_EPOCHS=${FM_EPOCHS:-5}

# Training, in two streams of about equal length: on 2 cores two runs side by side finish
# sooner than one after the other (the small convolutions of these networks do not keep
# both cores busy). Each stream's log is in $RUNS/logs.
mkdir -p "$RUNS/logs"
(
  python train.py --config configs/fashion_mnist_eenet20.py:onestage --workdir "$RUNS/fm_eenet20"
  python train.py --config configs/fashion_mnist_eenet8.py:plain,onestage --config.num_epochs="$FM_EPOCHS" \
    --workdir "$RUNS/fm_eenet8"
  python train.py --config configs/fashion_mnist_eenet8.py:plain,onestage --config.num_epochs="$FM_EPOCHS" \
    --config.model.num_exits=0 --workdir "$RUNS/fm_plain"
) > "$RUNS/logs/train_a.log" 2>&1 &
stream_a=$!
(
  # The cascade's members; the largest is also fm_eenet20's plain backbone.
  for m in large small tiny; do
    python train.py --config configs/fashion_mnist_cascade.py:$m --workdir "$RUNS/fm_cascade/$m"
  done
  python train.py --config configs/digits.py --workdir "$RUNS/digits"
  python train.py --config configs/digits.py --config.model.num_exits=0 \
    --workdir "$RUNS/digits_plain"
) > "$RUNS/logs/train_b.log" 2>&1 &
stream_b=$!
wait $stream_a || { echo "training stream A failed: see $RUNS/logs/train_a.log"; exit 1; }
wait $stream_b || { echo "training stream B failed: see $RUNS/logs/train_b.log"; exit 1; }
echo "training done"

# Policies fitted on validation, scored on test (report.json, budgets.json, plots).
python evaluate.py --config configs/digits.py --workdir "$RUNS/digits"
python evaluate.py --config configs/fashion_mnist_eenet8.py:plain,onestage --config.num_epochs="$FM_EPOCHS" \
  --workdir "$RUNS/fm_eenet8"
python evaluate.py --config configs/fashion_mnist_eenet20.py:onestage --workdir "$RUNS/fm_eenet20"
python evaluate.py --config configs/fashion_mnist_cascade.py --config.cascade.root="$RUNS/fm_cascade"

# Wall-clock speed-ups of the inference modes.
# The learned exit policy at matched budgets (each run overwrites eval/benchmark.json,
# so these go first and are copied). EENet-8's first exit already costs 0.477: no 0.3.
for b in 0.5 0.7; do
  python evaluate.py --config configs/fashion_mnist_eenet8.py:plain,onestage --config.num_epochs="$FM_EPOCHS" \
    --workdir "$RUNS/fm_eenet8" --benchmark --policy bolukbasi --target_cost $b \
    --modes full,masked,bucketed,host
  cp "$RUNS/fm_eenet8/eval/benchmark.json" "$RUNS/fm_eenet8/eval/benchmark_bolukbasi_$b.json"
done
for b in 0.3 0.5 0.7; do
  python evaluate.py --config configs/fashion_mnist_eenet20.py:onestage --workdir "$RUNS/fm_eenet20" \
    --benchmark --policy bolukbasi --target_cost $b --modes full,masked,bucketed,host
  cp "$RUNS/fm_eenet20/eval/benchmark.json" "$RUNS/fm_eenet20/eval/benchmark_bolukbasi_$b.json"
done
python evaluate.py --config configs/digits.py --workdir "$RUNS/digits" --benchmark
python evaluate.py --config configs/fashion_mnist_eenet8.py:plain,onestage --config.num_epochs="$FM_EPOCHS" \
  --workdir "$RUNS/fm_eenet8" --benchmark
python evaluate.py --config configs/fashion_mnist_cascade.py --config.cascade.root="$RUNS/fm_cascade" \
  --benchmark --repeats 3 --modes full,masked,bucketed,stream
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
stream fm_eenet8 --config configs/fashion_mnist_eenet8.py:plain,onestage --config.num_epochs="$FM_EPOCHS" \
  --policy bolukbasi --target_cost 0.7
stream fm_eenet20 --config configs/fashion_mnist_eenet20.py:onestage --policy bolukbasi --target_cost 0.5

python scripts/results_doc.py "$RUNS" > docs/RESULTS.generated.md
echo "wrote docs/RESULTS.generated.md"
