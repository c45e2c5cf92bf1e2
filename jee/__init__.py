"""jee: early-exit networks in JAX/Flax NNX, built for accelerator throughput."""

__version__ = "0.1.0"
