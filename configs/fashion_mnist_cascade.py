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

from jee.cascade.members import cascade_variant, load_config

HERE = os.path.dirname(os.path.abspath(__file__))


def _member(arch, width):
    def build():
        c = load_config(os.path.join(HERE, "fashion_mnist_eenet8.py"))
        c.model.arch = arch
        c.model.width = width
        c.model.num_exits = 0
        c.model.exit_blocks = ()
        return c
    return build


MEMBERS = {"tiny": _member("eenet8", 4), "small": _member("resnet8", 8),
           "large": _member("resnet20", 8)}


def get_config(arg=None):
    return cascade_variant(__file__, MEMBERS, arg, root="runs/fm_cascade")
