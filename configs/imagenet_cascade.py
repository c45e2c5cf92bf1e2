"""Network selection on ImageNet (tfds imagenet2012), after Bolukbasi et al.'s graph.

Their cascade was AlexNet, then GoogLeNet or straight to ResNet-50; here ResNet-18 (1.8 G
MACs), then ResNet-50 (4.1 G) or straight to ResNet-152 (11.5 G), each trained as in
configs/imagenet_resnet50.py without exits.

    for m in resnet18 resnet50 resnet152; do
      python train.py --config configs/imagenet_cascade.py:$m --workdir runs/in_cascade/$m
    done
    python evaluate.py --config configs/imagenet_cascade.py   # -> runs/in_cascade/eval
"""

import os

from jee.config import cascade_variant, variant_of

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_resnet50.py")
MEMBERS = {arch: variant_of(BASE, {"model.arch": arch, "model.num_exits": 0,
                                   "loss.warmup_epochs": 0.0})
           for arch in ("resnet18", "resnet50", "resnet152")}


def get_config(arg=None):
    return cascade_variant(__file__, MEMBERS, arg, root="runs/in_cascade",
                           edges=((0, 1), (0, 2), (1, 2)))
