"""CIFAR-10 (tfds) with EENet-20: ResNet-20 with 2 early exits, Pareto placement, pool heads.

Targets the EENets paper's CIFAR-10 ResNet-20 comparison (similar accuracy at a fraction of the
cost). Training follows the usual CIFAR ResNet recipe (He et al. 2016): SGD 0.1, momentum 0.9,
weight decay 1e-4, pad-and-crop + flip; cosine schedule over 164 epochs instead of steps.

    tfds build cifar10 --file_format=array_record    # once, needs TensorFlow
    python train.py --config configs/cifar10_eenet20.py --workdir runs/c10_eenet20
    ... --config.model.num_exits=0                      # its plain backbone (ResNet-20)
"""

from jee.config import base_config, smoke, unknown_variant


def get_config(arg=None):
    c = base_config()
    c.dataset.source = "tfds"
    c.dataset.name = "cifar10"
    c.dataset.val_size = 5000
    c.dataset.augment = "crop_flip"
    c.model.arch = "resnet20"
    c.model.num_exits = 2
    c.model.placement = "pareto"
    c.model.exit_type = "pool"
    c.loss.kind = "v2"
    c.loss.lam = 1.0
    c.loss.warmup_epochs = 5.0
    c.optimizer.learning_rate = 0.1
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "cosine"
    c.batch_size = 128
    c.num_epochs = 164
    if arg == "smoke":
        smoke(c)
    elif arg:
        raise unknown_variant(arg, "smoke")
    return c
