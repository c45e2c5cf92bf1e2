"""Network selection over a cascade of separately trained models (Bolukbasi et al., ICML 2017).

- :mod:`~jee.cascade.graph`: the allowed transitions (a DAG, cheapest model first) and paths;
- :mod:`~jee.cascade.data`: per-model features, path outcomes and the oracle;
- :mod:`~jee.cascade.policy`: routing policies (learned, threshold, fixed path);
- :mod:`~jee.cascade.fit`: the learned policy, a lambda sweep in one compiled call;
- :mod:`~jee.cascade.members`: cascade configs, their members' runs and outputs;
- :mod:`~jee.cascade.report`, :mod:`~jee.cascade.bench`, :mod:`~jee.cascade.describe`: what
  ``evaluate.py`` does with a cascade config.

The compiled inference engine is :mod:`jee.infer.cascade`.
"""
