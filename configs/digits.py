"""The embedded default: scikit-learn's bundled 8x8 handwritten digits (1,797 images).

No download, trains in about a minute on 2 CPU cores. A CIFAR-style ResNet-20 (16/32/64
channels; at 8x8 its stages see 8x8, 4x4 and 2x2 features) with 2 early exits placed by the
Pareto scheme, pool exit heads and the EENet v2 loss after 6 epochs of v0 warm-up.

    python train.py --config configs/digits.py --workdir runs/digits
    python train.py --config configs/digits.py --config.model.num_exits=0 \
        --workdir runs/digits_plain                      # its plain backbone
    --config configs/digits.py:smoke                     # a few steps, for tests
"""

from jee.config import base_config, smoke, unknown_variant


def get_config(arg=None):
    c = base_config()
    c.dataset.source = "digits"
    c.dataset.name = "digits"
    c.dataset.val_size = 0.15
    c.model.arch = "resnet20"
    c.model.num_exits = 2
    c.model.placement = "pareto"
    c.model.exit_type = "pool"
    c.loss.kind = "v2"
    c.loss.lam = 1.0
    c.loss.warmup_epochs = 6.0
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_epochs = 1.0
    c.batch_size = 64
    c.eval_batch_size = 256
    c.num_epochs = 20
    c.log_every_steps = 20
    if arg == "smoke":
        smoke(c)
        c.model.arch = "resnet8"
        c.num_epochs = 2
        c.max_steps = 6
        c.eval_batch_size = 64
        c.log_every_steps = 2
    elif arg:
        raise unknown_variant(arg, "smoke")
    return c
