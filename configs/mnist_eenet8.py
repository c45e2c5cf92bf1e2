"""MNIST (tfds) with EENet-8 as in the EENets paper's MNIST experiment (2 filters; :f4 for 4).

Early exits after blocks 0 and 1 (EENet-8's fixed positions), ``pool`` heads (global average
pool -> dense, as in the reference code's custom_eenet.py), v2 loss, lambda 1.0 (the reference
code's default), SGD 0.1 with momentum 0.9 and weight decay 1e-4. Targets the paper's MNIST
result: similar accuracy to the plain EENet-8 backbone at a fraction of its cost.

Variants, comma-separated, at most one per group: ``f2`` | ``f4`` (filters, default f2; ``4``
is kept as another name for f4), ``pool`` | ``plain`` | ``bnpool`` (exit heads, default pool;
plain and bnpool are jee's variants) and ``smoke``.

    tfds build mnist --file_format=array_record      # once, needs TensorFlow
    python train.py --config configs/mnist_eenet8.py --workdir runs/mnist_eenet8
    python train.py --config configs/mnist_eenet8.py:f4 --workdir runs/mnist_eenet8_4f
    ... --config.model.num_exits=0                      # its plain backbone
"""

from jee.config import base_config, smoke, unknown_variant

FILTERS = {"f2": 2, "f4": 4, "4": 4}
EXIT_HEADS = ("pool", "plain", "bnpool")
KNOWN = ("comma-separated, at most one per group: f2 | f4 (filters, default f2; '4' = f4); "
         "pool | plain | bnpool (exit heads, default pool); smoke")


def get_config(arg=None):
    parts = [p for p in (arg or "").split(",") if p]
    filters = [p for p in parts if p in FILTERS]
    heads = [p for p in parts if p in EXIT_HEADS]
    others = [p for p in parts if p not in FILTERS and p not in EXIT_HEADS]
    if len(filters) > 1 or len(heads) > 1 or others.count("smoke") > 1 or set(others) - {"smoke"}:
        raise unknown_variant(arg, KNOWN)
    c = base_config()
    c.dataset.source = "tfds"
    c.dataset.name = "mnist"
    c.dataset.val_size = 5000
    c.model.arch = "eenet8"
    c.model.width = FILTERS[filters[0]] if filters else 2
    c.model.num_exits = 2
    c.model.exit_blocks = (0, 1)
    c.model.exit_type = heads[0] if heads else "pool"
    c.loss.kind = "v2"
    c.loss.lam = 1.0
    c.loss.warmup_epochs = 2.0
    c.optimizer.learning_rate = 0.1
    c.optimizer.weight_decay = 1e-4
    c.batch_size = 256
    c.num_epochs = 20
    if "smoke" in others:
        smoke(c)
    return c
