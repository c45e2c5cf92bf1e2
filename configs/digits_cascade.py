"""Network selection on scikit-learn's digits: three plain backbones of very different cost.

tiny = ResNet-8 with 4 filters, small = ResNet-8 with 16, large = ResNet-20 with 16 (the
plain backbone of configs/digits.py); each trained as in configs/digits.py without exits.
Every model may hand over to every more expensive one.

    for m in tiny small large; do
      python train.py --config configs/digits_cascade.py:$m --workdir runs/digits_cascade/$m
    done
    python evaluate.py --config configs/digits_cascade.py     # -> runs/digits_cascade/eval
"""

import os

from jee.config import cascade_variant, variant_of

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.py")
NO_EXITS = {"model.num_exits": 0, "loss.warmup_epochs": 0.0}
MEMBERS = {
    "tiny": variant_of(BASE, {**NO_EXITS, "model.arch": "resnet8", "model.width": 4}),
    "small": variant_of(BASE, {**NO_EXITS, "model.arch": "resnet8", "model.width": 16}),
    "large": variant_of(BASE, {**NO_EXITS, "model.arch": "resnet20", "model.width": 16}),
}


def get_config(arg=None):
    return cascade_variant(__file__, MEMBERS, arg, root="runs/digits_cascade")
