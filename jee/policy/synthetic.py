"""Synthetic early-exit network outputs, for tests and benchmarks of the policy code.

Each example has a difficulty in [0, 1); the logit of its label gets a boost that grows with
depth and shrinks with difficulty, so later exits are more accurate, easy examples are right
early, and confidence features are informative but noisy, as in a real EENet.
"""

from __future__ import annotations

import numpy as np


def synthetic_exit_outputs(
    num_exits: int, num_examples: int, num_classes: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(logits [E, N, C] f32, conf [E, N] f32, labels [N] int, costs [E] f32)``.

    Costs grow linearly to 1 plus a little per exit head, so the last exceeds 1 as in jee.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, num_examples)
    difficulty = rng.uniform(size=num_examples)
    logits = rng.normal(size=(num_exits, num_examples, num_classes)).astype(np.float32)
    depth = np.linspace(0.5, 4.0, num_exits)[:, None]
    logits[:, np.arange(num_examples), labels] += depth * (1.2 - difficulty)
    # The confidence head sees a noisy version of how peaked the logits are.
    peak = logits.max(-1) + 0.5 * rng.normal(size=(num_exits, num_examples))
    conf = 1.0 / (1.0 + np.exp(-(peak - 2.0)))
    costs = np.linspace(1.0 / num_exits, 1.0, num_exits) + 0.02 * np.arange(1, num_exits + 1)
    return logits, conf.astype(np.float32), labels, costs.astype(np.float32)
