"""Exit policies: features, thresholds, oracle, learned (Bolukbasi et al.) policies.

Every online policy offers ``decide(k, logits_k, conf_k) -> bool [B]`` (jit-able, k static;
the engine calls it on the rows still alive after exit k) and the equivalent offline
``exits(logits [E,N,C], conf [E,N]) -> int32 [N]``. Modules:

- ``features``: per-exit features (max prob, margin, entropy, EENet confidence; the
  ``history`` set adds the logit gap and what earlier exits said), top-1/top-5 correctness,
  and ``ExitData``, the per-split container built by ``exit_data``.
- ``history``: ``carry_history`` wraps a network's segments so history features work online,
  in the unchanged engines.
- ``decisions``: the ``ExitPolicy`` protocol, ``FeaturePolicy`` (derives both modes from one
  per-exit rule) and ``first_exit``.
- ``thresholds``: ``eenet_policy``, ``max_prob_policy``, ``entropy_policy`` (shared or
  per-exit thresholds). ``fixed``: every example at one exit.
- ``oracle``: cheapest correct exit (offline only, needs labels).
- ``logistic``: weighted logistic regression with optax L-BFGS, fixed step count.
- ``bolukbasi``: the learned policy, a whole lambda sweep fitted in one compiled call.
- ``metrics``: accuracy, top-5, relative cost, speedup, exit fractions; JSON report rows.
- ``crossfit``: honest selection, k-fold out-of-fold figures of every family's settings.
- ``sweeps``: accuracy/cost curves per family (set on validation, scored on test).
- ``budget``: most accurate setting within a validation cost budget, reported on test.
- ``plots``: accuracy-vs-cost and exit-histogram PNGs from the report dicts.
- ``synthetic``: synthetic early-exit outputs for tests and benchmarks.
"""
