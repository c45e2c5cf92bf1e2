"""Training loop: ``train_and_evaluate(config, workdir)``.

The train step is one pure function under ``jax.jit`` over a data-parallel mesh (batch
sharded on ``data``, state replicated, state buffers donated). It computes every exit for the
whole batch (masked batch mode) and the configured EENet loss. The loop dispatches step N
before it reads any metric of step N-1, and reads metrics only at log steps, so the device
never waits for the host. A killed run started again on the same workdir resumes from the
latest checkpoint: the data stream is a pure function of (seed, step), so it continues exactly
as if it had not stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jee import confidence_stage, losses, optim, scoring, sharding
from jee import data as data_lib
from jee.checkpoint import Checkpoints
from jee.errors import TrainingDiverged
from jee.metrics_log import MetricsWriter, ProgressBar
from jee.models import count_params, forward, split
from jee.runs import build_model
from jee.workdir import WorkdirError, WorkdirLock, check_workdir, make_dir, remove_if_created


def init_state(params, batch_stats, tx) -> dict:
    return {"step": jnp.zeros((), jnp.int32), "params": params, "batch_stats": batch_stats,
            "opt_state": tx.init(params), "nan_step": jnp.full((), -1, jnp.int32)}


def make_train_step(graphdef, tx, loss_cfg, costs, mesh, warmup_steps: int = 0):
    """The jitted step: (state, batch) -> (state, metrics); ``state`` is donated.

    For the first ``warmup_steps`` the loss is v0 (every exit's cross-entropy): the EENet
    mixtures pass no gradient to an exit's classifier once its confidence is near 0, and from
    a random start the confidences of the early exits collapse before their classifiers learn.
    """
    costs = jnp.asarray(costs, jnp.float32)
    loss_kind, lam, weights = loss_cfg.kind, float(loss_cfg.lam), tuple(loss_cfg.exit_weights)
    grad_scale = float(loss_cfg.exit_grad_scale)
    if loss_kind not in losses.LOSSES:
        raise ValueError(f"unknown loss.kind {loss_kind!r}; choose one of {losses.LOSSES}")

    def step(state, batch):
        def loss_fn(params):
            logits, conf, new_stats = forward(graphdef, params, state["batch_stats"],
                                              batch["image"], True, grad_scale)
            loss, aux = losses.eenet_loss(loss_kind, logits, conf, batch["label"], costs,
                                          lam=lam, exit_weights=weights)
            if warmup_steps:
                warm, _ = losses.eenet_loss("v0", logits, conf, batch["label"], costs)
                loss = jnp.where(state["step"] < warmup_steps, warm, loss)
            return loss, (aux, new_stats, logits)

        (loss, (aux, new_stats, logits)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = jax.tree.map(jnp.add, state["params"], updates)
        finite = jnp.isfinite(loss)
        nan_step = jnp.where((state["nan_step"] < 0) & ~finite, state["step"], state["nan_step"])
        correct = jnp.argmax(logits, -1) == batch["label"][None]
        metrics = {"loss": loss, "ce": aux["ce"], "cost": aux["cost"],
                   "exit_accuracy": jnp.mean(correct, axis=1)}
        new_state = {"step": state["step"] + 1, "params": params, "batch_stats": new_stats,
                     "opt_state": opt_state, "nan_step": nan_step}
        return new_state, metrics

    repl = sharding.replicated(mesh)
    return jax.jit(step, in_shardings=(repl, sharding.batch_sharding(mesh)),
                   out_shardings=(repl, repl), donate_argnums=0)


def _check_config(config, ds) -> None:
    if ds.num_examples("val") == 0:
        raise ValueError("config.dataset.val_size must be > 0: the validation split picks the "
                         "best checkpoint and is where exit policies are fitted")
    sharding.check_batch_size(config.batch_size)
    sharding.check_batch_size(config.eval_batch_size, "eval_batch_size")
    if not 0.0 <= config.loss.exit_grad_scale <= 1.0:
        raise ValueError("config.loss.exit_grad_scale must be in [0, 1] (1: the exit heads' "
                         f"full gradient; 0: none), got {config.loss.exit_grad_scale}")
    confidence_stage.check(config, ds)
    if "holdout" in ds.splits and not config.confidence_stage.epochs:
        ProgressBar.message(
            f"warning: config.dataset.holdout_size keeps {ds.num_examples('holdout')} examples "
            "out of training but config.confidence_stage.epochs is 0, so nothing uses them")


def _save_config(config, workdir: str) -> None:
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json(indent=2))


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints); returns the test
    figures of the best checkpoint (by validation accuracy).

    The workdir is checked before any work and locked for the run (process 0 holds the lock);
    a bad input found before training starts leaves no new file behind.
    """
    lead = jax.process_index() == 0
    config = confidence_stage.for_model(config)
    existed = check_workdir(workdir)
    make_dir(workdir)
    lock = WorkdirLock(workdir, what="train.py", enabled=lead)
    try:
        _agree(lambda: lock.acquire() if lead else None)
        ds = data_lib.build(config.dataset)
        _check_config(config, ds)
    except BaseException:
        lock.release()
        remove_if_created(workdir, existed)
        raise
    try:
        return _train(config, workdir, ds)
    finally:
        lock.release()


def _agree(fn) -> None:
    """Runs ``fn`` on every process; if it raised on process 0, every process raises (so the
    others do not wait forever in the first collective)."""
    error = None
    try:
        fn()
    except WorkdirError as e:
        error = e
    if jax.process_count() > 1:
        failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
        if failed and error is None:
            raise WorkdirError("process 0 could not take the workdir lock (see its message)")
    if error is not None:
        raise error


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a run: global steps [begin, end) over one split."""

    number: int               # 1: main; 2: confidence stage
    record: str               # the metrics.jsonl kind of its training records
    split: str
    begin: int
    end: int
    steps_per_epoch: int
    first_epoch: float        # the epoch number at ``begin`` (stages count on from each other)

    def epoch(self, step: int) -> float:
        return self.first_epoch + (step - self.begin) / self.steps_per_epoch


def _stages(config, ds) -> list[Stage]:
    spe = data_lib.steps_per_epoch(ds, config.batch_size)
    cap = config.max_steps or None
    end = spe * config.num_epochs if cap is None else min(spe * config.num_epochs, cap)
    stages = [Stage(1, "train", "train", 0, end, spe, 0.0)]
    if config.confidence_stage.epochs:
        spe2 = data_lib.steps_per_epoch(ds, config.batch_size, "holdout")
        if spe2 == 0:
            raise ValueError(f"the holdout has {ds.num_examples('holdout')} examples, fewer than "
                             f"one batch of {config.batch_size}: raise "
                             "config.dataset.holdout_size")
        steps = int(round(spe2 * config.confidence_stage.epochs))
        if cap is not None:
            steps = max(0, min(steps, cap - end))
        stages.append(Stage(2, "confidence", "holdout", end, end + steps, spe2,
                            float(end) / spe))
    return stages


def _train(config, workdir: str, ds) -> dict:
    _save_config(config, workdir)
    mesh = sharding.make_mesh()
    model = build_model(config, ds)
    costs = model.costs().relative_costs()
    graphdef, params, batch_stats = split(model)
    stages = _stages(config, ds)
    main = stages[0]
    total_steps = stages[-1].end
    tx, schedule = optim.make_optimizer(config.optimizer, main.steps_per_epoch, config.num_epochs)
    state = sharding.put_replicated(mesh, init_state(params, batch_stats, tx))
    conf_tx = (confidence_stage.make_optimizer(config, stages[1].end - stages[1].begin)
               if len(stages) > 1 else None)

    writer = MetricsWriter(workdir, config=config)
    ckpts = Checkpoints(workdir, keep=config.keep_checkpoints)
    start = ckpts.latest_step()
    dropped = writer.rewind(start)
    if start is not None:
        # The checkpoint at the boundary is the main stage's last state.
        if len(stages) > 1 and start > stages[1].begin:
            state = confidence_stage.init_state(state, conf_tx, reset=False)
        state = ckpts.restore(start, state)
        ProgressBar.message(
            f"resumed from checkpoint at step {start} in {ckpts.directory}"
            + (f" ({dropped} metrics records of the interrupted attempt dropped)"
               if dropped else ""))
    else:
        start = 0
        ProgressBar.message(
            f"{config.model.arch}: {count_params(params):,} parameters, exits after blocks "
            f"{list(model.exit_blocks)}, relative costs {[round(c, 3) for c in costs]}; "
            f"{ds.num_examples('train')} train / {ds.num_examples('val')} val / "
            f"{ds.num_examples('test')} test examples"
            + (f" / {ds.num_examples('holdout')} holdout" if "holdout" in ds.splits else "")
            + f", {jax.device_count()} devices")
        writer.write("setup", 0, params=count_params(params), exit_blocks=list(model.exit_blocks),
                     relative_costs=costs, devices=jax.device_count(),
                     stages=[dataclasses.asdict(s) for s in stages])

    def run_eval(state, split_name):
        return scoring.evaluate(graphdef, state["params"], state["batch_stats"], ds, split_name,
                                  batch_size=config.eval_batch_size, costs=costs,
                                  threshold=config.threshold, mesh=mesh)

    def check_finite(state, last_good):
        bad = int(state["nan_step"])
        if bad >= 0:
            where = (f"the last good checkpoint is step {last_good} in {ckpts.directory}"
                     if last_good is not None else "no checkpoint was saved before it")
            raise TrainingDiverged(
                f"loss became NaN/Inf at step {bad}; training stopped and {where}. Lower "
                "optimizer.learning_rate, add optimizer.grad_clip_norm or warm-up, or use "
                "model.dtype=float32")

    bar = ProgressBar(total_steps, enabled=config.progress, start=start)
    loop = _Loop(config, writer, ckpts, bar, run_eval, check_finite, mesh,
                 last_saved=start if start else None)
    step = start
    try:
        for stage in stages:
            if step >= stage.end:
                continue
            if stage.number == 1:
                lr = schedule
                train_step = make_train_step(
                    graphdef, tx, config.loss, costs, mesh,
                    warmup_steps=int(config.loss.warmup_epochs * stage.steps_per_epoch))
            else:
                if step == stage.begin:
                    state = sharding.put_replicated(mesh, confidence_stage.init_state(
                        state, conf_tx, reset=config.confidence_stage.reset))
                    ProgressBar.message(
                        f"confidence stage: {stage.end - stage.begin} steps on "
                        f"{ds.num_examples('holdout')} held-out examples, only the "
                        "confidence branches train")
                lr = confidence_stage.schedule(config, stage.end - stage.begin)
                train_step = confidence_stage.make_step(graphdef, conf_tx, config, costs, mesh)
            state, step = loop.run(stage, state, step, train_step, lr, ds)
        bar.close()
        ckpts.wait()
        return _final_test(config, workdir, ckpts, state, step, run_eval, writer)
    finally:
        loop.close()
        ckpts.close()
        writer.close()


class _Loop:
    """The step loop of one stage: dispatch, metrics at log steps, validation and
    checkpoints at epoch ends."""

    def __init__(self, config, writer, ckpts, bar, run_eval, check_finite, mesh, last_saved):
        self.config, self.writer, self.ckpts, self.bar = config, writer, ckpts, bar
        self.run_eval, self.check_finite, self.mesh = run_eval, check_finite, mesh
        self.last_saved = last_saved
        self.batches = None

    def close(self) -> None:
        close = getattr(self.batches, "close", None)
        if close is not None:
            close()
        self.batches = None

    def run(self, stage: Stage, state, step: int, train_step, lr, ds):
        """Runs ``stage`` from ``step``; ``lr`` is its schedule by steps into the stage."""
        config = self.config
        self.close()
        self.batches = data_lib.train_batches(
            ds, config.dataset, batch_size=config.batch_size, seed=config.seed + stage.number - 1,
            start_step=step - stage.begin, process_index=jax.process_index(),
            process_count=jax.process_count(), split=stage.split)
        spe = stage.steps_per_epoch
        pending, t_log, images = [], time.time(), 0
        val, val_step = None, -1
        while step < stage.end:
            batch = sharding.put_batch(self.mesh, next(self.batches))
            state, metrics = train_step(state, batch)
            step += 1
            images += config.batch_size
            pending.append(metrics)
            done = step - stage.begin
            epoch_end = done % spe == 0 or step == stage.end
            if step % config.log_every_steps == 0 or epoch_end:
                self.check_finite(state, self.last_saved)
                fetched = jax.device_get(pending)
                mean = {k: np.mean([m[k] for m in fetched], axis=0) for k in fetched[0]}
                now = time.time()
                ips = images / max(now - t_log, 1e-9)
                self.writer.write(stage.record, step, epoch=stage.epoch(step),
                                  lr=float(lr(step - 1 - stage.begin)), images_per_s=ips,
                                  **mean)
                self.bar.update(step, stage.epoch(step), loss=float(mean["loss"]),
                                acc=float(mean["exit_accuracy"][-1]), img_s=round(ips, 1))
                pending, t_log, images = [], now, 0
            epoch = done // spe
            # The confidence stage validates every checkpoint: its checkpoints are ranked
            # among themselves, and only validated ones rank.
            every = 1 if stage.number > 1 else config.eval_every_epochs
            if epoch_end and (epoch % every == 0 or step == stage.end):
                val, val_step = self.run_eval(state, "val"), step
                extra = {"stage": stage.number} if stage.number > 1 else {}
                self.writer.write("val", step, epoch=stage.epoch(step), **extra, **val)
                ProgressBar.message(
                    f"epoch {stage.epoch(step):.2f} val: accuracy at T={config.threshold} "
                    f"{val['accuracy']:.4f}, per exit "
                    f"{np.round(val['exit_accuracy'], 4).tolist()}, exits "
                    f"{np.round(val['exit_fractions'], 3).tolist()}, relative cost "
                    f"{val['relative_cost']:.3f}")
            if epoch_end and (epoch % config.checkpoint_every_epochs == 0 or step == stage.end
                              or stage.number > 1):
                self.check_finite(state, self.last_saved)
                # Only a validation result of this very state may rank it among the best.
                self.ckpts.save(step, state, stage=stage.number,
                                val_accuracy=val["accuracy"] if val_step == step else None)
                self.last_saved = step
        return state, step


def _final_test(config, workdir, ckpts, state, step, run_eval, writer) -> dict:
    """Scores the best checkpoint on test (the figure evaluate.py reports on) and, labelled,
    the last state; writes both to ``test_metrics.json`` and ``metrics.jsonl``."""
    last = {"step": step, **run_eval(state, "test")}
    best_step = ckpts.best_step()
    if best_step is None or best_step == step:
        chosen = last
        how = ("best checkpoint" if best_step == step
               else "last state (no checkpoint was validated)")
    else:
        chosen = {"step": best_step, **run_eval(ckpts.restore(best_step, state), "test")}
        how = "best checkpoint"
    val_acc = None if best_step is None else ckpts.metrics(best_step)["val_accuracy"]
    record = {"scored": how, "val_accuracy": val_acc, **chosen,
              "last_state": last}
    writer.write("test", step, **{k: v for k, v in record.items() if k != "step"},
                 checkpoint_step=chosen["step"])
    ProgressBar.message(
        f"test ({how}, step {chosen['step']}"
        + (f", val accuracy {val_acc:.4f}" if val_acc is not None else "") + "): "
        f"accuracy at T={config.threshold} {chosen['accuracy']:.4f}, final exit "
        f"{chosen['final_accuracy']:.4f}, per exit "
        f"{np.round(chosen['exit_accuracy'], 4).tolist()}, exits "
        f"{np.round(chosen['exit_fractions'], 3).tolist()}, relative cost "
        f"{chosen['relative_cost']:.3f}")
    if chosen is not last:
        ProgressBar.message(
            f"test (last state, step {step}): accuracy at T={config.threshold} "
            f"{last['accuracy']:.4f}, final exit {last['final_accuracy']:.4f}")
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "test_metrics.json"), "w") as f:
            json.dump(record, f, indent=2)
    return record
