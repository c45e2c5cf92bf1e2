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

from jee.config import cascade_variant, variant_of

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar10_eenet20.py")
MEMBERS = {arch: variant_of(BASE, {"model.arch": arch, "model.num_exits": 0,
                                   "loss.warmup_epochs": 0.0})
           for arch in ("resnet20", "resnet56", "resnet110")}


def get_config(arg=None):
    return cascade_variant(__file__, MEMBERS, arg, root="runs/c10_cascade")
