"""``run(config, options)``: one evaluation command, its output folder prepared before any work.

The command follows from the options' type (describe, report, benchmark) and from the config
(one network, or a cascade when ``cascade.members`` is set). A bad output path fails before
anything is computed, and a user error removes the folders the command created.
"""

from __future__ import annotations

import contextlib

from jee.config import is_cascade
from jee.evaluation import cascade_bench, cascade_report, describe, exit_bench, exit_report
from jee.evaluation.options import BenchmarkOptions, DescribeOptions, ReportOptions
from jee.outputs import prepared

Options = DescribeOptions | ReportOptions | BenchmarkOptions


def _workdir(config, options: Options) -> str | None:
    """Where the command writes: ``--workdir``; a cascade's default is ``cascade.root``."""
    if options.workdir or isinstance(options, DescribeOptions) or not is_cascade(config):
        return options.workdir
    return config.cascade.root


def run(config, options: Options, config_name: str = ""):
    """Runs the command ``options`` asks for on ``config``; returns what it computed.

    ``config_name`` labels benchmark results (the config file and variant).
    """
    cascade = is_cascade(config)
    workdir = _workdir(config, options)
    if workdir is None and not isinstance(options, DescribeOptions):
        raise ValueError("--workdir is required (except with --describe)")
    # A trained network's run must exist; a cascade's root, a description's folder or a
    # random-init benchmark's folder may be new.
    must_exist = not cascade and (isinstance(options, ReportOptions)
                                  or not getattr(options, "random_init", True))
    context = prepared(workdir, must_exist=must_exist) if workdir \
        else contextlib.nullcontext()
    with context as out:
        if isinstance(options, DescribeOptions):
            return describe.run(config, options, out)
        if isinstance(options, ReportOptions):
            return (cascade_report if cascade else exit_report).run(config, options, out)
        if cascade:
            return cascade_bench.run(config, options, out)
        return exit_bench.run(config, options, out, config_name)
