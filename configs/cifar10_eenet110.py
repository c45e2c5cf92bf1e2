"""CIFAR-10 (tfds) with EENet-110: ResNet-110 with 8 early exits, Pareto placement.

The reference implementation's worked example (eenet110, CIFAR-10, 8 exits) and the EENets
paper's deepest CIFAR network; targets its claim of cost cut to 20-42% of the ResNet at
similar accuracy. Also the architecture of jee's inference benchmark (issue: bucketed exits).

    python train.py --config configs/cifar10_eenet110.py --workdir runs/c10_eenet110
    ... --config.model.num_exits=0                      # its plain backbone (ResNet-110)
    python evaluate.py --config configs/cifar10_eenet110.py --workdir runs/bench \
        --benchmark --random_init                       # speed-up without a checkpoint
"""

from jee.config import base_config, smoke, unknown_variant


def get_config(arg=None):
    c = base_config()
    c.dataset.source = "tfds"
    c.dataset.name = "cifar10"
    c.dataset.val_size = 5000
    c.dataset.augment = "crop_flip"
    c.model.arch = "resnet110"
    c.model.num_exits = 8
    c.model.placement = "pareto"
    c.model.exit_type = "pool"
    c.loss.kind = "v2"
    c.loss.lam = 1.0
    c.loss.warmup_epochs = 5.0
    c.optimizer.learning_rate = 0.1
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_epochs = 1.0  # ResNet-110 needs a gentle start (He et al. 2016)
    c.batch_size = 128
    c.num_epochs = 164
    if arg == "smoke":
        c.model.arch = "resnet20"
        c.model.num_exits = 2
        smoke(c)
    elif arg:
        raise unknown_variant(arg, "smoke")
    return c
