"""Device mesh and data placement for data-parallel training and evaluation.

One mesh axis, ``data``, over every device of every process: batches are split along it,
parameters and optimizer state are replicated. Under ``jax.jit`` the BatchNorm statistics of a
sharded batch are global (XLA inserts the all-reduce), so one device and eight give the same
step. Each process passes only its own rows; ``make_array_from_process_local_data`` assembles
the global array without any process reading another's data.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh() -> jax.sharding.Mesh:
    # Auto axes (GSPMD propagation): jit's in/out shardings say where data lives, and arrays
    # moved off the mesh (e.g. to one device for inference) carry no mesh in their type.
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def check_batch_size(batch_size: int, what: str = "batch_size") -> None:
    n = jax.device_count()
    if batch_size % n:
        raise ValueError(f"config.{what}={batch_size} is not divisible by the {n} devices; "
                         f"use a multiple of {n}")


def put_batch(mesh, local_batch: dict) -> dict:
    """Global sharded arrays from this process's rows of a batch."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local_batch.items()}


def put_replicated(mesh, tree):
    return jax.device_put(tree, replicated(mesh))
