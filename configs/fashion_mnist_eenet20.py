"""Fashion-MNIST with a CIFAR-style ResNet-20 (8/16/32 filters) and 3 early exits.

The recipe of configs/fashion_mnist_eenet8.py (v2 loss after 2 epochs of v0, Adam, 10 epochs,
``plain`` exit heads) on a deeper backbone: exits placed by the Pareto scheme after blocks 1,
3 and 4, at relative costs 0.25, 0.46 and 0.58. Its plain backbone is the ``large`` member of
configs/fashion_mnist_cascade.py (the same network and recipe).

    python train.py --config configs/fashion_mnist_eenet20.py --workdir runs/fm_eenet20
    ... --config.model.num_exits=0                   # its plain backbone
"""

import os

from jee.config import smoke, unknown_variant, variant_of

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_eenet8.py")
RESNET20 = variant_of(BASE, {"model.arch": "resnet20", "model.width": 8, "model.num_exits": 3,
                             "model.exit_blocks": (), "model.placement": "pareto"})


def get_config(arg=None):
    c = RESNET20()
    if arg == "smoke":
        smoke(c)
    elif arg:
        raise unknown_variant(arg, "smoke")
    return c
