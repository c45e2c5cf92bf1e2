"""Network selection on Fashion-MNIST: three plain backbones of very different cost.

tiny = EENet-8 with 4 filters (0.61 M MACs), small = ResNet-8 with 8 (2.36 M), large =
ResNet-20 with 8 (7.78 M); each trained as in configs/fashion_mnist_eenet8.py without exits.
Every model may hand over to every more expensive one (tiny -> large is the jump).

    python train.py --config configs/fashion_mnist_cascade.py:tiny --workdir runs/fm_cascade/tiny
    python train.py --config configs/fashion_mnist_cascade.py:small --workdir runs/fm_cascade/small
    python train.py --config configs/fashion_mnist_cascade.py:large --workdir runs/fm_cascade/large
    python evaluate.py --config configs/fashion_mnist_cascade.py      # -> runs/fm_cascade/eval
    python evaluate.py --config configs/fashion_mnist_cascade.py --benchmark
    ... --config.cascade.root=DIR   # members trained elsewhere (DIR/tiny, DIR/small, DIR/large)
"""

import os

from jee.config import cascade_variant, variant_of

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_eenet8.py")
NO_EXITS = {"model.num_exits": 0, "model.exit_blocks": ()}
MEMBERS = {
    "tiny": variant_of(BASE, {**NO_EXITS, "model.arch": "eenet8", "model.width": 4}),
    "small": variant_of(BASE, {**NO_EXITS, "model.arch": "resnet8", "model.width": 8}),
    "large": variant_of(BASE, {**NO_EXITS, "model.arch": "resnet20", "model.width": 8}),
}


def get_config(arg=None):
    return cascade_variant(__file__, MEMBERS, arg, root="runs/fm_cascade")
