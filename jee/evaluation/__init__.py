"""What ``evaluate.py`` does, one module per command, each taking typed options:

- :mod:`~jee.evaluation.commands`: ``run(config, options)``, which picks the command from the
  options' type and whether the config is a cascade, and prepares the output folder first;
- :mod:`~jee.evaluation.options`: the options of each command;
- :mod:`~jee.evaluation.describe`: a network's exits or a cascade's paths, from the config;
- :mod:`~jee.evaluation.exit_report`, :mod:`~jee.evaluation.exit_bench`: the exit policies
  report and the inference-mode benchmark of one trained network;
- :mod:`~jee.evaluation.cascade_report`, :mod:`~jee.evaluation.cascade_bench`: the same for a
  cascade of networks, whose members :mod:`~jee.evaluation.cascade_inputs` restores and runs;
- :mod:`~jee.evaluation.report_files`: the files both reports write.
"""
