"""Evaluate a trained early-exit network, describe one, or benchmark its inference modes.

    python evaluate.py --config configs/NAME.py --describe [--workdir DIR]
    python evaluate.py --config configs/NAME.py --workdir DIR            # policies report
    python evaluate.py --config configs/NAME.py --workdir DIR --benchmark [--random_init]
    python evaluate.py --config configs/NAME_cascade.py [--describe | --benchmark]
"""

from absl import app, flags
from ml_collections import config_flags

from jee import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "The training run's directory; reports go to DIR/eval "
                    "(a cascade's default: cascade.root).")
flags.DEFINE_bool("describe", False, "Print the exits' positions, costs and parameters "
                  "(no checkpoint needed); with --workdir also write DIR/eval/describe.json.")
flags.DEFINE_bool("benchmark", False, "Time the inference modes and write DIR/eval/benchmark.json.")
flags.DEFINE_bool("random_init", False, "Benchmark without a checkpoint (random weights, "
                  "synthetic exit policy).")
flags.DEFINE_integer("batch_size", 256, "Benchmark batch size.")
flags.DEFINE_float("target_cost", 0.5, "Synthetic policy: mean relative cost to aim for.")
flags.DEFINE_string("policy", "eenet", "Benchmark policy with a checkpoint: eenet | bolukbasi.")
flags.DEFINE_integer("repeats", 10, "Benchmark: timed repetitions per mode.")
flags.DEFINE_integer("eager_examples", 32, "Benchmark: examples timed in the eager modes.")
flags.DEFINE_list("modes", ["full", "masked", "bucketed", "host", "eager", "per_example"],
                  "Benchmark: inference modes to time.")
flags.DEFINE_enum("ladder", "geometric", ["pow2", "geometric"],
                  "Benchmark: bucket ladder (geometric: finer, less padding, longer compile).")
flags.DEFINE_float("ladder_growth", 1.25, "Benchmark: growth factor of the geometric ladder.")
flags.DEFINE_string("step", "best", "Checkpoint to load: best (highest validation accuracy), "
                    "latest, or a step number.")
flags.DEFINE_bool("allow_padding", False, "Benchmark: allow --batch_size above the test split's "
                  "size (the rest is padding, counted in benchmark.json).")
flags.DEFINE_string("split", "test", "Split to report on (policies are fitted on 'val').")
cli.define_distributed_flags()
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.quiet_logs()
    cli.start_distributed(FLAGS)
    from jee import evaluation  # after distributed start-up: it touches devices

    cli.run_reporting_errors(lambda: evaluation.run(FLAGS.config, FLAGS))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
