"""Train an early-exit network: ``python train.py --config configs/NAME.py --workdir DIR``.

Override any config key with ``--config.key=value`` (e.g. ``--config.model.num_exits=0`` for
the plain backbone). Started again on the same workdir, training resumes from its latest
checkpoint.
"""

from absl import app, flags
from ml_collections import config_flags

from jee import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
cli.define_distributed_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.quiet_logs()
    cli.start_distributed(FLAGS)
    from jee import train_lib  # after distributed start-up: it touches devices

    cli.run_reporting_errors(lambda: train_lib.train_and_evaluate(FLAGS.config, FLAGS.workdir))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
