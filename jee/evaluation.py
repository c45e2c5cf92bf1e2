"""What ``evaluate.py`` does: describe, policy report, benchmark (the entry point stays thin).

A cascade config (``cascade.members`` set) gets the same three for network selection
(``jee.cascade``).
"""

from __future__ import annotations

import json
import os

import jax

from jee import data as data_lib
from jee.models.describe import describe, format_table


def _eval_dir(workdir: str) -> str:
    path = os.path.join(workdir, "eval")
    os.makedirs(path, exist_ok=True)
    return path


def write_json(workdir: str, name: str, obj) -> str:
    path = os.path.join(_eval_dir(workdir), name)
    if jax.process_index() == 0:
        with open(path, "w") as f:
            json.dump(obj, f, indent=2)
    return path


# Image shape and class count of datasets whose configs ship with jee, so that --describe
# needs neither the data nor a checkpoint. Other datasets are opened to read them.
KNOWN_SHAPES = {
    "digits": ((8, 8, 1), 10),
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
    "svhn_cropped": ((32, 32, 3), 10),
    "tiny_imagenet": ((64, 64, 3), 200),
    "imagenet2012": ((224, 224, 3), 1000),
}


class _Shapes:
    def __init__(self, image_shape, num_classes):
        self.image_shape, self.num_classes = tuple(image_shape), num_classes


def model_for_config(config):
    """The network of a config, built without reading its data where the shape is known."""
    from jee.train_lib import build_model

    known = KNOWN_SHAPES.get(config.dataset.name)
    if known is not None:
        shape, classes = known
        if config.dataset.image_size:
            shape = (config.dataset.image_size, config.dataset.image_size, shape[2])
        return build_model(config, _Shapes(shape, classes))
    return build_model(config, data_lib.build(config.dataset))


def run(config, flags) -> None:
    from jee.cascade.members import is_cascade

    if is_cascade(config):
        _run_cascade(config, flags)
        return
    if flags.describe:
        desc = describe(model_for_config(config))
        print(format_table(desc))
        if flags.workdir:
            print(f"wrote {write_json(flags.workdir, 'describe.json', desc)}")
        return
    if not flags.workdir:
        raise ValueError("--workdir is required (except with --describe)")
    if flags.benchmark:
        from jee import bench_cli

        bench_cli.run(config, flags)
        return
    from jee import report_cli

    report_cli.run(config, flags)


def _run_cascade(config, flags) -> None:
    """A cascade config: its reports go to cascade.root unless --workdir says otherwise."""
    if flags.describe:
        from jee.cascade.describe import describe_cascade, format_cascade

        desc = describe_cascade(config)
        print(format_cascade(desc))
        if flags.workdir:
            print(f"wrote {write_json(flags.workdir, 'describe.json', desc)}")
        return
    if flags.benchmark:
        from jee.cascade import bench

        bench.run(config, flags)
        return
    from jee.cascade import report

    report.run(config, flags)
