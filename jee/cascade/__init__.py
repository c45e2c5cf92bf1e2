"""Network selection over a cascade of separately trained models (Bolukbasi et al., ICML 2017).

- :mod:`~jee.cascade.graph`: the allowed transitions (a DAG, cheapest model first) and paths;
- :mod:`~jee.cascade.features`: per-model features, path outcomes and the oracle;
- :mod:`~jee.cascade.policy`: routing policies (learned, threshold, fixed path);
- :mod:`~jee.cascade.fit`: the learned policy, a lambda sweep in one compiled call;
- :mod:`~jee.cascade.sweeps`: every policy family's accuracy/cost curve and the operating
  points;
- :mod:`~jee.cascade.members`: a cascade config's members (configs, runs) and their outputs.

The compiled inference engine is :mod:`jee.infer.cascade`; what ``evaluate.py`` does with a
cascade config is in :mod:`jee.evaluation`.
"""
