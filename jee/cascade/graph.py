"""The transition graph of a cascade of models, and the paths an example can take through it.

Nodes are the models, cheapest first: every example starts at node 0, and after node k a
policy stops or moves to one of k's successors, all later nodes (a DAG in the listed order, so
the listed order is also a topological order). A path is the sequence of nodes evaluated; its
cost is the sum of their costs. Paths are few (at most 2^(M-1) for M models), so they are
enumerated once and every outcome of a policy is an index into that list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class CascadeGraph:
    """``successors[k]``: the nodes reachable from node k in one step, increasing (all > k)."""

    successors: tuple[tuple[int, ...], ...]

    @property
    def num_models(self) -> int:
        return len(self.successors)

    def paths(self) -> tuple[tuple[int, ...], ...]:
        """Every path from node 0, in depth-first order (stopping before going on)."""
        out = []

        def walk(path):
            out.append(path)
            for nxt in self.successors[path[-1]]:
                walk((*path, nxt))

        walk((0,))
        return tuple(out)

    def path_costs(self, costs: Sequence[float]) -> np.ndarray:
        """``[P]``: the summed ``costs`` of the models on each path."""
        costs = np.asarray(costs, np.float64)
        return np.asarray([costs[list(p)].sum() for p in self.paths()])

    def path_index_table(self) -> np.ndarray:
        """``int32 [2^M]``: the path index of each visited-set bitmask (-1: not a path).

        A path visits its nodes in increasing order, so the set of nodes determines it.
        """
        table = np.full(1 << self.num_models, -1, np.int32)
        for i, path in enumerate(self.paths()):
            table[sum(1 << k for k in path)] = i
        return table

    def describe_path(self, path: Sequence[int], names: Sequence[str]) -> str:
        return " -> ".join(names[k] for k in path)


def make_graph(num_models: int, edges: Sequence[Sequence[int]] = ()) -> CascadeGraph:
    """The graph of ``num_models`` models; ``edges`` as (from, to) pairs, or empty for the
    default: every model to every more expensive one.

    Each edge must go forward (from < to) between existing nodes, and every node must be
    reachable from node 0, so that every model is used by some path.
    """
    if num_models < 1:
        raise ValueError("a cascade needs at least one model")
    if not edges:
        edges = [(i, j) for i in range(num_models) for j in range(i + 1, num_models)]
    successors: list[set[int]] = [set() for _ in range(num_models)]
    for edge in edges:
        if len(edge) != 2:
            raise ValueError(f"cascade edge {tuple(edge)} must be a (from, to) pair")
        i, j = (int(v) for v in edge)
        if not (0 <= i < num_models and 0 <= j < num_models):
            raise ValueError(f"cascade edge ({i}, {j}) names a model outside 0..{num_models - 1}")
        if j <= i:
            raise ValueError(
                f"cascade edge ({i}, {j}) goes backward: list the models cheapest first and "
                "only let a model hand over to a later one")
        successors[i].add(j)
    graph = CascadeGraph(tuple(tuple(sorted(s)) for s in successors))
    reached = {k for path in graph.paths() for k in path}
    missing = sorted(set(range(num_models)) - reached)
    if missing:
        raise ValueError(f"cascade models {missing} cannot be reached from model 0 with edges "
                         f"{sorted(tuple(e) for e in edges)}; add an edge into each")
    return graph
