"""Fashion-MNIST (Debian package dataset-fashion-mnist, IDX files) with EENet-8, 4 filters.

The EENets paper's small MNIST network applied to Fashion-MNIST (CPU-scale real data here):
early exits after blocks 0 and 1 (EENet-8's fixed positions), v2 loss. The exit heads are
``plain`` (flatten -> dense): pooled heads see only 4 and 8 channels here and reached 39% and
67% test accuracy after 5 epochs, against 89% for plain heads (docs/RESULTS.md).

    apt-get install -y dataset-fashion-mnist
    python train.py --config configs/fashion_mnist_eenet8.py --workdir runs/fmnist_eenet8
    ... --config.model.num_exits=0                   # its plain backbone
"""

from jee.config import base_config, smoke, unknown_variant


def get_config(arg=None):
    c = base_config()
    c.dataset.source = "idx"
    c.dataset.name = "fashion_mnist"
    c.dataset.path = "/usr/share/datasets/fashion-mnist"
    c.dataset.val_size = 5000
    c.model.arch = "eenet8"
    c.model.width = 4
    c.model.num_exits = 2
    c.model.exit_blocks = (0, 1)
    c.model.exit_type = "plain"
    c.loss.kind = "v2"
    c.loss.lam = 1.0
    c.loss.warmup_epochs = 2.0
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-3
    c.optimizer.weight_decay = 0.0
    c.optimizer.schedule = "cosine"
    c.batch_size = 128
    c.num_epochs = 10
    c.log_every_steps = 100
    if arg == "smoke":
        smoke(c)
    elif arg:
        raise unknown_variant(arg, "smoke")
    return c
