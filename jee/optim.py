"""Optimizers and learning-rate schedules from ``config.optimizer``."""

from __future__ import annotations

import jax
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


def make_schedule(cfg, steps_per_epoch: int, num_epochs: int) -> optax.Schedule:
    total = max(1, steps_per_epoch * num_epochs)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    lr = cfg.learning_rate
    if cfg.schedule == "constant":
        main = optax.constant_schedule(lr)
    elif cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, max(1, total - warmup))
    elif cfg.schedule == "step":
        boundaries = {int(e * steps_per_epoch) - warmup: cfg.decay_factor
                      for e in cfg.decay_epochs}
        main = optax.piecewise_constant_schedule(lr, boundaries)
    else:
        raise ValueError(f"unknown optimizer.schedule {cfg.schedule!r}; choose one of {SCHEDULES}")
    if warmup:
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
    return main


def _decay_mask(params):
    # Weight decay on kernels only, not on biases or BatchNorm scales/shifts.
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(cfg, steps_per_epoch: int, num_epochs: int):
    """Returns (optax transformation, schedule)."""
    schedule = make_schedule(cfg, steps_per_epoch, num_epochs)
    parts = []
    if cfg.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
    if cfg.name == "sgd":
        if cfg.weight_decay:
            parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=_decay_mask))
        parts.append(optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov))
    elif cfg.name == "adam":
        if cfg.weight_decay:
            parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=_decay_mask))
        parts.append(optax.adam(schedule))
    elif cfg.name == "adamw":
        parts.append(optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=_decay_mask))
    else:
        raise ValueError(f"unknown optimizer.name {cfg.name!r}; choose one of {OPTIMIZERS}")
    return optax.chain(*parts), schedule
