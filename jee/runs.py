"""A trained run as the rest of jee sees it: the network its config builds, and its weights.

Training builds the network here and evaluation restores it here, so both agree on what a
config means. Restoring reads only the step and the weights (parameters and batch
statistics), never the optimizer state: evaluation needs no optimizer, and may be run with
optimizer settings other than those the run was trained with.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jee import data as data_lib
from jee import sharding
from jee.checkpoint import Checkpoints
from jee.confidence_stage import for_model
from jee.metrics_log import ProgressBar
from jee.models import apply_backbone, apply_segment, build_eenet, split

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

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


class Shapes:
    """What a network needs of its data: ``image_shape`` and ``num_classes``."""

    def __init__(self, image_shape, num_classes: int):
        self.image_shape, self.num_classes = tuple(image_shape), int(num_classes)


def build_model(config, shapes):
    """The network of ``config`` for data of ``shapes`` (a :class:`Shapes` or a Dataset)."""
    m = config.model
    if m.dtype not in DTYPES:
        raise ValueError(f"unknown model.dtype {m.dtype!r}; choose one of {sorted(DTYPES)}")
    # num_exits=0 always means the plain backbone, so one override gives every config's
    # baseline; explicit exit_blocks must then agree with num_exits.
    exit_blocks = tuple(m.exit_blocks) if m.num_exits else ()
    if exit_blocks and len(exit_blocks) != m.num_exits:
        raise ValueError(f"model.exit_blocks {list(exit_blocks)} has {len(exit_blocks)} entries "
                         f"but model.num_exits={m.num_exits}; make them agree")
    return build_eenet(m.arch, shapes.image_shape, shapes.num_classes, num_exits=m.num_exits,
                       placement=m.placement, exit_blocks=exit_blocks,
                       exit_type=m.exit_type, width=m.width, dtype=DTYPES[m.dtype],
                       seed=config.seed,
                       # config.json files written before the key existed lack it
                       confidence_inputs=m.get("confidence_inputs", "features"))


def model_for_config(config):
    """The network of a config, built without reading its data where the shape is known."""
    known = KNOWN_SHAPES.get(config.dataset.name)
    if known is None:
        return build_model(config, build_dataset(config))
    shape, classes = known
    if config.dataset.image_size:
        shape = (config.dataset.image_size, config.dataset.image_size, shape[2])
    return build_model(config, Shapes(shape, config.dataset.get("num_classes") or classes))


def build_dataset(config) -> data_lib.Dataset:
    """The dataset as a run of ``config`` trained on it. A plain backbone's config drops its
    holdout as train.py does (``confidence_stage.for_model``): the holdout changes the
    training split and with it the normalisation statistics, so without this a plain
    network evaluated under an early-exit recipe's config would see shifted images."""
    return data_lib.build(for_model(config).dataset)


def restore_trained(config, workdir: str, which: str | int = "best", *, announce: bool = True,
                    ds: data_lib.Dataset | None = None):
    """(dataset, model, state) of a trained run; ``state`` holds its step and weights.

    ``which`` is 'best' (the highest validation accuracy), 'latest' or a step number. ``model``
    is the freshly built network (its parameters are not the trained ones: use
    ``state['params']`` / ``state['batch_stats']`` with ``split(model)[0]``). With
    ``announce`` the step loaded and why are printed (process 0). ``ds``: the run's dataset,
    if the caller has built it already.
    """
    ds = ds if ds is not None else build_dataset(config)
    mesh = sharding.make_mesh()
    model = build_model(config, ds)
    _, params, batch_stats = split(model)
    like = sharding.put_replicated(mesh, {"step": jnp.zeros((), jnp.int32), "params": params,
                                          "batch_stats": batch_stats})
    ckpts = Checkpoints(workdir, read_only=True)
    try:
        step, why = ckpts.select(which)
        state = ckpts.restore(step, like)
    finally:
        ckpts.close()
    if announce:
        ProgressBar.message(f"loaded checkpoint step {step} of {workdir}: {why}")
    return ds, model, state


def on_one_device(state):
    """(params, batch_stats) of a restored state, taken off the training mesh: the inference
    engines run on one device."""
    return jax.device_put((state["params"], state["batch_stats"]), jax.devices()[0])


def network_functions(graphdef, params, batch_stats, num_exits: int):
    """The engines' view of a network (:mod:`jee.infer.interface`): its segments, with the
    confidence as a probability, and the plain backbone, each closing over the weights."""
    def make(k):
        def segment(h):
            h_next, logits, conf_logit = apply_segment(graphdef, params, batch_stats, k, h)
            return h_next, logits, jax.nn.sigmoid(conf_logit)
        return segment

    def full(x):
        return apply_backbone(graphdef, params, batch_stats, x)

    return [make(k) for k in range(num_exits)], full


def backbone_function(model, state):
    """``f(x) -> logits`` of a restored network's plain backbone, weights on one device."""
    graphdef = split(model)[0]
    params, stats = on_one_device(state)
    return lambda x: apply_backbone(graphdef, params, stats, x)
