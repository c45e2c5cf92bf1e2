"""MNIST (tfds) with EENet-8 as in the EENets paper's MNIST experiment (2 filters; :4 for 4).

Early exits after blocks 0 and 1 (EENet-8's fixed positions), bnpool heads, v2 loss,
lambda 1.0 (the reference code's default), SGD 0.1 with momentum 0.9 and weight decay 1e-4.
Targets the paper's MNIST result: similar accuracy to the plain EENet-8 backbone at a fraction
of its cost.

    tfds build mnist --file_format=array_record      # once, needs TensorFlow
    python train.py --config configs/mnist_eenet8.py --workdir runs/mnist_eenet8
    python train.py --config configs/mnist_eenet8.py:4 --workdir runs/mnist_eenet8_4f
    ... --config.model.num_exits=0                      # its plain backbone
"""

from jee.config import base_config, smoke, unknown_variant


def get_config(arg=None):
    c = base_config()
    c.dataset.source = "tfds"
    c.dataset.name = "mnist"
    c.dataset.val_size = 5000
    c.model.arch = "eenet8"
    c.model.width = 2
    c.model.num_exits = 2
    c.model.exit_blocks = (0, 1)
    c.model.exit_type = "bnpool"
    c.loss.kind = "v2"
    c.loss.lam = 1.0
    c.loss.warmup_epochs = 2.0
    c.optimizer.learning_rate = 0.1
    c.optimizer.weight_decay = 1e-4
    c.batch_size = 256
    c.num_epochs = 20
    if arg == "4":
        c.model.width = 4
    elif arg == "smoke":
        smoke(c)
    elif arg:
        raise unknown_variant(arg, "4, smoke")
    return c
