"""Policies as arguments of compiled programs, so that a new policy need not recompile them.

A policy closed over by a traced function is baked into the program as constants: every
operating point of a sweep would compile its own programs. Passed as an argument instead, a
policy that is a pytree of arrays (the registered dataclasses of :mod:`jee.cascade.policy`)
reuses the programs compiled for any other of the same structure and shapes. Any other
policy object travels as a static value, compiled in once per object as a closure would be.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_static
class _CompiledIn:
    """A policy that is not a pytree of arrays, carried as a static value: programs compiled
    for it are reused for this same policy object only."""

    def __init__(self, policy):
        self.policy = policy

    def __eq__(self, other):
        return isinstance(other, _CompiledIn) and other.policy is self.policy

    def __hash__(self):
        return id(self.policy)


def policy_argument(policy: Any) -> Any:
    """``policy`` as an argument of a compiled program (see the module doc)."""
    arrays = (jax.Array, np.ndarray, np.generic, int, float)
    if all(isinstance(leaf, arrays) for leaf in jax.tree.leaves(policy)):
        return policy
    return _CompiledIn(policy)


def argument_policy(argument: Any) -> Any:
    """The policy an argument made by :func:`policy_argument` stands for."""
    return argument.policy if isinstance(argument, _CompiledIn) else argument


def argument_signature(argument: Any) -> tuple:
    """What a program's compilation for ``argument`` depends on: its structure and shapes."""
    leaves, structure = jax.tree.flatten(argument)
    return structure, tuple((np.shape(leaf), jnp.result_type(leaf)) for leaf in leaves)
