"""Inference engines that turn early exits into saved wall-clock time.

All engines run a network given as E segments ``segments[k](h) -> (h_next, logits, conf)`` and
a policy ``decide(k, logits, conf, aux) -> bool [b]`` (see :mod:`jee.infer.interface`), and
return ``(exit_index int32 [B], logits_at_exit float32 [B, C])``:

- :mod:`~jee.infer.masked`: every example through every segment, exits chosen afterwards; the
  accuracy reference, no savings;
- :mod:`~jee.infer.bucketed`: survivors re-batched on device into ladder buckets with
  ``lax.switch``, one compiled program per batch shape (the serving path);
- :mod:`~jee.infer.host`: the same re-batching driven from Python, one sync per segment;
- :mod:`~jee.infer.eager`: one example at a time, eager or compiled at batch size 1 (how the
  PyTorch reference implementations infer).

:mod:`~jee.infer.cascade` applies the bucketed re-batching to network selection, where the
"segments" are whole models and a routing policy may jump over some of them.

:mod:`~jee.infer.ladder` builds bucket ladders, :mod:`~jee.infer.synthetic` a policy replaying
pre-assigned exits, :mod:`~jee.infer.compiles` counts compilations and
:mod:`~jee.infer.benchmark` times every mode against the plain backbone.
"""

from jee.infer.benchmark import make_engine, run_benchmark
from jee.infer.bucketed import BucketedEngine, bucketed_forward
from jee.infer.cascade import CascadeEngine, MaskedCascadeEngine, cascade_forward
from jee.infer.compiles import CompileCounter
from jee.infer.eager import EagerEngine, PerExampleEngine, eager_forward
from jee.infer.host import HostEngine
from jee.infer.ladder import fit_ladder, make_ladder, resolve_ladder
from jee.infer.masked import MaskedEngine, masked_forward
from jee.infer.synthetic import (
    SyntheticPolicy,
    fractions_for_cost,
    mean_cost,
    synthetic_exits,
)

__all__ = [
    "BucketedEngine",
    "CascadeEngine",
    "CompileCounter",
    "EagerEngine",
    "HostEngine",
    "MaskedCascadeEngine",
    "MaskedEngine",
    "PerExampleEngine",
    "SyntheticPolicy",
    "bucketed_forward",
    "cascade_forward",
    "eager_forward",
    "fit_ladder",
    "fractions_for_cost",
    "make_engine",
    "make_ladder",
    "masked_forward",
    "resolve_ladder",
    "mean_cost",
    "run_benchmark",
    "synthetic_exits",
]
