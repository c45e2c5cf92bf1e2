"""Network selection on CIFAR-10 (tfds): ResNet-20, ResNet-56 and ResNet-110 without exits.

Costs 40.8 M, 125.8 M and 253.1 M MACs; each trained as in configs/cifar10_eenet20.py. Every
model may hand over to every more expensive one.

    tfds build cifar10 --file_format=array_record    # once, needs TensorFlow
    for m in resnet20 resnet56 resnet110; do
      python train.py --config configs/cifar10_cascade.py:$m --workdir runs/c10_cascade/$m
    done
    python evaluate.py --config configs/cifar10_cascade.py    # -> runs/c10_cascade/eval
"""

import os

from jee.cascade.members import cascade_variant, load_config

HERE = os.path.dirname(os.path.abspath(__file__))


def _member(arch):
    def build():
        c = load_config(os.path.join(HERE, "cifar10_eenet20.py"))
        c.model.arch = arch
        c.model.num_exits = 0
        c.loss.warmup_epochs = 0.0
        return c
    return build


MEMBERS = {name: _member(name) for name in ("resnet20", "resnet56", "resnet110")}


def get_config(arg=None):
    return cascade_variant(__file__, MEMBERS, arg, root="runs/c10_cascade")
