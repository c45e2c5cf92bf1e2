"""Evaluate a trained early-exit network, describe one, or benchmark its inference modes.

    python evaluate.py --config configs/NAME.py --describe [--workdir DIR]
    python evaluate.py --config configs/NAME.py --workdir DIR            # policies report
    python evaluate.py --config configs/NAME.py --workdir DIR --benchmark [--random_init]
    python evaluate.py --config configs/NAME_cascade.py [--describe | --benchmark]
"""

import os

from absl import app, flags
from ml_collections import config_flags

from jee import cli
from jee.infer.benchmark import DEFAULT_MODES

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
flags.DEFINE_list("modes", list(DEFAULT_MODES), "Benchmark: inference modes to time; stream "
                  "adds passes over a data set (benchmark.json's dataset section).")
flags.DEFINE_enum("ladder", "geometric", ["pow2", "geometric"],
                  "Benchmark: bucket ladder (geometric: finer, less padding, longer compile).")
flags.DEFINE_float("ladder_growth", 1.25, "Benchmark: growth factor of the geometric ladder.")
flags.DEFINE_string("step", "best", "Checkpoint to load: best (highest validation accuracy), "
                    "latest, or a step number.")
flags.DEFINE_bool("allow_padding", False, "Benchmark: allow --batch_size above the test split's "
                  "size (the rest is padding, counted in benchmark.json).")
flags.DEFINE_list("arrival_sizes", ["B", "8"], "Benchmark with the stream mode: sizes of the "
                  "chunks requests arrive in (B: --batch_size).")
flags.DEFINE_integer("dataset_batches", 40, "Benchmark with the stream mode and --random_init: "
                     "synthetic batches per timed pass.")
flags.DEFINE_enum("stream_plan", "auto", ["auto", "none"], "Benchmark with the stream mode: "
                  "auto lets segments share a queue where few examples leave between them, "
                  "planned from validation's exit fractions; none: a queue per segment.")
flags.DEFINE_string("split", "test", "Split to report on (policies are fitted on 'val').")
flags.DEFINE_integer("crossfit_folds", 5, "Report and cascade benchmark: select each policy's "
                     "setting on out-of-fold "
                     "figures of this many validation folds, then refit on all of validation; "
                     "0 or 1: fit and select on all of validation (in-sample).")
flags.DEFINE_enum("policy_features", "auto", ["auto", "basic", "history"],
                  "Report: the learned policy's features (basic: each exit's own; history: "
                  "also earlier exits' agreement and confidence, or for a cascade the root "
                  "model's margin and entropy; auto: the better out of fold).")
flags.DEFINE_bool("cpu_async_dispatch", False, "Benchmark on the CPU backend: let JAX run "
                  "independent programs concurrently (its default). Off, one program runs at "
                  "a time, as on a GPU stream, so that whole passes and the segments timed "
                  "alone for the ideal by time are measured alike.")
flags.DEFINE_bool("keep_host_memory", True, "Benchmark: keep freed host memory in the process "
                  "(glibc mallopt), so that XLA:CPU programs do not page-fault their scratch "
                  "memory in again on every call (see jee/host_memory.py); off: glibc's "
                  "default, recorded as such.")
cli.define_distributed_flags()
flags.mark_flags_as_required(["config"])


def options_from_flags(f):
    """The typed options of the command the flags ask for (the flags stay here)."""
    from jee.evaluation import options

    if f.describe:
        return options.DescribeOptions(workdir=f.workdir)
    if f.benchmark:
        return options.BenchmarkOptions(
            workdir=f.workdir, batch_size=f.batch_size, repeats=f.repeats, modes=f.modes,
            ladder=f.ladder, ladder_growth=f.ladder_growth, random_init=f.random_init,
            target_cost=f.target_cost, policy=f.policy, eager_examples=f.eager_examples,
            step=f.step, allow_padding=f.allow_padding, arrival_sizes=f.arrival_sizes,
            dataset_batches=f.dataset_batches, crossfit_folds=f.crossfit_folds,
            stream_plan=f.stream_plan)
    return options.ReportOptions(workdir=f.workdir, split=f.split, step=f.step,
                                 crossfit_folds=f.crossfit_folds, features=f.policy_features)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.quiet_logs()
    if FLAGS.benchmark:
        import jax

        # Read when the CPU client is made, so before anything touches a device.
        jax.config.update("jax_cpu_enable_async_dispatch", FLAGS.cpu_async_dispatch)
        if FLAGS.keep_host_memory:
            from jee.host_memory import keep_host_memory

            keep_host_memory()
    cli.start_distributed(FLAGS)
    # After distributed start-up: these touch devices.
    from jee.evaluation import commands

    # "digits.py:smoke" from --config path/to/digits.py:smoke, to label benchmark results.
    config_name = os.path.basename(config_flags.get_config_filename(FLAGS["config"]))
    cli.run_reporting_errors(lambda: commands.run(FLAGS.config, options_from_flags(FLAGS),
                                                  config_name))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
