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

:mod:`~jee.infer.stream` keeps a queue of survivors per segment (or per span of segments,
planned by :mod:`~jee.infer.stream_plan`) and runs every queue on full batches across input
batches; :mod:`~jee.infer.stream_driver` is the machinery it shares with
:mod:`~jee.infer.stream_cascade` (network selection), :mod:`~jee.infer.stream_programs` its
compiled programs, :mod:`~jee.infer.stream_sched` its
queues and schedulers, :mod:`~jee.infer.stream_lengths` the host's bounds on the queue lengths
(so steps are queued without waiting for each other), and :mod:`~jee.infer.server` serves
requests through either.

:mod:`~jee.infer.cascade` applies the bucketed re-batching to network selection, where the
"segments" are whole models and a routing policy may jump over some of them; the cascade
engines take the policy as an argument of their programs (:mod:`~jee.infer.policy_args`), so
another operating point of the same structure compiles nothing.

:mod:`~jee.infer.ladder` builds bucket ladders, :mod:`~jee.infer.synthetic` a policy replaying
pre-assigned exits, :mod:`~jee.infer.compiles` counts compilations and
:mod:`~jee.infer.benchmark` times every mode against the plain backbone, with the primitives
of :mod:`~jee.infer.timing`.
"""
