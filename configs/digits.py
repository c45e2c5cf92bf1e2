"""The embedded default: scikit-learn's bundled 8x8 handwritten digits (1,797 images).

No download, trains in about a minute on 2 CPU cores. A CIFAR-style ResNet-20 (16/32/64
channels; at 8x8 its stages see 8x8, 4x4 and 2x2 features) with 2 early exits placed by the
Pareto scheme, pool exit heads and the EENet v2 loss after 6 epochs of v0 warm-up, in one
stage as in the paper.

    python train.py --config configs/digits.py --workdir runs/digits
    python train.py --config configs/digits.py --config.model.num_exits=0 \
        --workdir runs/digits_plain                      # its plain backbone

Variants (comma-separated): ``onestage`` | ``adaptive``, the recipe. The default is
``onestage``, the paper's training, because here it is the better one (docs/RESULTS.md): with
full gradients the first exit is 98.9% accurate, the final exit is within 0.3 point of the
plain network, and every test example leaves at the first exit. ``adaptive``
(``jee.config.adaptive_recipe`` with 15% of the training images held out for a confidence
stage of 20 epochs) holds out 183 of 1,222 training images and scales the exits' gradients
by 0.1, and both cost more than they give on this small set: its first exit falls to 49%.
``smoke``: a few steps, for tests.
"""

from jee.config import adaptive_recipe, base_config, parse_variants, smoke

KNOWN = "comma-separated: onestage | adaptive (recipe, default onestage); smoke"


def get_config(arg=None):
    v = parse_variants(arg, {"recipe": ("adaptive", "onestage")}, KNOWN)
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
    if v.get("recipe", "onestage") == "adaptive":
        adaptive_recipe(c, holdout_size=0.15, stage_epochs=20.0)
    if v["smoke"]:
        smoke(c)
        c.model.arch = "resnet8"
        c.num_epochs = 2
        c.max_steps = 6
        c.eval_batch_size = 64
        c.log_every_steps = 2
    return c
