"""What ``evaluate.py`` does: describe, policy report, benchmark (the entry point stays thin).

A cascade config (``cascade.members`` set) gets the same three for network selection
(``jee.cascade``).
"""

from __future__ import annotations

import contextlib
import json
import os

import jax

from jee import data as data_lib
from jee.models.describe import describe, format_table
from jee.workdir import WorkdirError, check_workdir, make_dir, remove_if_created


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
        with _output_dir(flags.workdir or config.cascade.root, must_exist=False,
                         wanted=not flags.describe or bool(flags.workdir)):
            _run_cascade(config, flags)
        return
    if flags.describe:
        with _output_dir(flags.workdir, must_exist=False, wanted=bool(flags.workdir)):
            desc = describe(model_for_config(config))
            print(format_table(desc))
            if flags.workdir:
                print(f"wrote {write_json(flags.workdir, 'describe.json', desc)}")
        return
    if not flags.workdir:
        raise ValueError("--workdir is required (except with --describe)")
    with _output_dir(flags.workdir, must_exist=not flags.random_init):
        if flags.benchmark:
            from jee import bench_cli

            bench_cli.run(config, flags)
            return
        from jee import report_cli

        report_cli.run(config, flags)


@contextlib.contextmanager
def _output_dir(workdir: str, *, must_exist: bool, wanted: bool = True):
    """Checks and creates ``workdir/eval`` before any computation, so a bad path fails at once
    rather than after the report is computed; on a user error, removes what it created."""
    if not wanted:
        yield
        return
    from jee.cli import USER_ERRORS

    existed = check_workdir(workdir, must_exist=must_exist)
    out = os.path.join(workdir, "eval")
    if os.path.exists(out) and not os.path.isdir(out):
        raise WorkdirError(f"{out} is a file, not a directory; move it away")
    out_existed = os.path.isdir(out)
    make_dir(out)
    try:
        check_workdir(out)
        yield
    except USER_ERRORS:
        remove_if_created(out, out_existed)
        remove_if_created(workdir, existed)
        raise


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
