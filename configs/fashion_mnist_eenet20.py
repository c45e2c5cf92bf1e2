"""Fashion-MNIST with a CIFAR-style ResNet-20 (8/16/32 filters) and 3 early exits.

The recipe of configs/fashion_mnist_eenet8.py (v2 loss after 2 epochs of v0, Adam, 10 epochs,
the adaptive recipe: exit gradients into the backbone scaled by 0.1, then a confidence stage
on 5,000 held-out images) on a deeper backbone: exits placed by the Pareto scheme after
blocks 1, 3 and 4. Its plain backbone is the ``large`` member of
configs/fashion_mnist_cascade.py (the same network and recipe).

Variants, comma-separated, at most one per group:
- ``plain`` | ``pool`` | ``bnpool``: exit heads, default ``plain`` (flatten -> dense, relative
  costs 0.25, 0.46, 0.58). The EENets paper's ``pool`` heads (global average pool -> dense,
  costs 0.24, 0.45, 0.56) see 8 channels at the first exit and reach about 70% there against
  91% for plain heads (docs/RESULTS.md);
- ``adaptive`` | ``onestage``: the recipe, default ``adaptive``; ``onestage`` is the EENet
  training of the paper alone (no holdout, no confidence stage, full exit gradients);
- ``smoke``: a few steps, for tests.

    python train.py --config configs/fashion_mnist_eenet20.py --workdir runs/fm_eenet20
    python train.py --config configs/fashion_mnist_eenet20.py:pool --workdir runs/fm_eenet20_pool
    ... --config.model.num_exits=0                   # its plain backbone (all 55,000 images)
"""

import os

from jee.config import parse_variants, smoke, variant_of

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_eenet8.py")
RESNET20 = variant_of(BASE, {"model.arch": "resnet20", "model.width": 8, "model.num_exits": 3,
                             "model.exit_blocks": (), "model.placement": "pareto"})
GROUPS = {"heads": ("plain", "pool", "bnpool"), "recipe": ("adaptive", "onestage")}
KNOWN = ("comma-separated, at most one per group: plain | pool | bnpool (exit heads, default "
         "plain); adaptive | onestage (recipe, default adaptive); smoke")


def get_config(arg=None):
    v = parse_variants(arg, GROUPS, KNOWN)
    c = RESNET20()
    c.model.exit_type = v.get("heads", "plain")
    # The base (EENet-8) detaches its pooled exits; these plain ones are worth a little of
    # the backbone: their gradients are scaled by 0.1.
    c.loss.exit_grad_scale = 0.1
    if v.get("recipe", "adaptive") == "onestage":
        c.loss.exit_grad_scale = 1.0
        c.model.confidence_inputs = "features"
        c.dataset.holdout_size = 0.0
        c.confidence_stage.epochs = 0.0
    if v["smoke"]:
        smoke(c)
    return c
