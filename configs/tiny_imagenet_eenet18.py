"""Tiny-ImageNet (200 classes, 64x64; folder source) with EENet-18: ResNet-18, 4 exits.

Targets the EENets paper's Tiny-ImageNet experiment. The folder source wants
``PATH/train/<class>/*.JPEG`` and ``PATH/val/<class>/*.JPEG``. The official archive keeps its
validation images in one folder with ``val_annotations.txt``; move each into its class folder
once (the test split here is that labelled validation set; jee's own validation is carved
from train).

    python train.py --config configs/tiny_imagenet_eenet18.py \
        --config.dataset.path=/data/tiny-imagenet-200 --workdir runs/tin_eenet18
    ... --config.model.num_exits=0                      # its plain backbone (ResNet-18)
"""

from jee.config import base_config, smoke, unknown_variant


def get_config(arg=None):
    c = base_config()
    c.dataset.source = "folder"
    c.dataset.name = "tiny_imagenet"
    c.dataset.path = "data/tiny-imagenet-200"
    c.dataset.test_split = "val"
    c.dataset.image_size = 64
    c.dataset.val_size = 10000
    c.dataset.augment = "crop_flip"
    c.dataset.crop_padding = 8
    c.dataset.num_workers = 8
    c.model.arch = "resnet18"
    c.model.num_exits = 4
    c.model.placement = "pareto"
    c.model.exit_type = "bnpool"
    c.loss.kind = "v2"
    c.loss.lam = 1.0
    c.loss.warmup_epochs = 5.0
    c.optimizer.learning_rate = 0.1
    c.optimizer.weight_decay = 5e-4
    c.optimizer.warmup_epochs = 2.0
    c.batch_size = 256
    c.num_epochs = 90
    if arg == "smoke":
        c.model.arch = "resnet14"
        c.model.num_exits = 2
        c.dataset.num_workers = 0
        smoke(c)
    elif arg:
        raise unknown_variant(arg, "smoke")
    return c
