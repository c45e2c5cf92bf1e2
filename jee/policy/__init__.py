"""Exit policies: features, thresholds, oracle, learned (Bolukbasi et al.) policies."""
