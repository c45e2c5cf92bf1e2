"""SVHN (tfds svhn_cropped) with EENet-20: ResNet-20, 2 early exits, Pareto placement.

Targets the EENets paper's SVHN experiment. Digits must not be mirrored, so the augmentation
is pad-and-crop without flips.

    tfds build svhn_cropped --file_format=array_record   # once, needs TensorFlow
    python train.py --config configs/svhn_eenet20.py --workdir runs/svhn_eenet20
    ... --config.model.num_exits=0                          # its plain backbone
"""

from jee.config import base_config, smoke, unknown_variant


def get_config(arg=None):
    c = base_config()
    c.dataset.source = "tfds"
    c.dataset.name = "svhn_cropped"
    c.dataset.val_size = 6000
    c.dataset.augment = "crop"
    c.model.arch = "resnet20"
    c.model.num_exits = 2
    c.model.placement = "pareto"
    c.model.exit_type = "pool"
    c.loss.kind = "v2"
    c.loss.lam = 1.0
    c.loss.warmup_epochs = 2.0
    c.optimizer.learning_rate = 0.1
    c.optimizer.weight_decay = 1e-4
    c.batch_size = 128
    c.num_epochs = 40
    if arg == "smoke":
        smoke(c)
    elif arg:
        raise unknown_variant(arg, "smoke")
    return c
