"""Fashion-MNIST with a CIFAR-style ResNet-20 (8/16/32 filters) and 3 early exits.

The recipe of configs/fashion_mnist_eenet8.py (v2 loss after 2 epochs of v0, Adam, 10 epochs,
``plain`` exit heads) on a deeper backbone: exits placed by the Pareto scheme after blocks 1,
3 and 4, at relative costs 0.25, 0.46 and 0.58. Its plain backbone is the ``large`` member of
configs/fashion_mnist_cascade.py (the same network and recipe).

    python train.py --config configs/fashion_mnist_eenet20.py --workdir runs/fm_eenet20
    ... --config.model.num_exits=0                   # its plain backbone
"""

import os

from jee.cascade.members import load_config
from jee.defaults import smoke, unknown_variant

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(arg=None):
    c = load_config(os.path.join(HERE, "fashion_mnist_eenet8.py"))
    c.model.arch = "resnet20"
    c.model.width = 8
    c.model.num_exits = 3
    c.model.exit_blocks = ()
    c.model.placement = "pareto"
    if arg == "smoke":
        smoke(c)
    elif arg:
        raise unknown_variant(arg, "smoke")
    return c
