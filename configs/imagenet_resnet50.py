"""ImageNet (tfds imagenet2012, resized to 224x224) with ResNet-50 and 4 early exits.

The scale of Bolukbasi et al.'s ImageNet experiments (ResNet-50 as the most expensive model)
and of the EENets' ImageNet-style backbones. Simplified input pipeline: a fixed resize to
224x224 with pad-and-crop + flip rather than random-resized crops. Use bfloat16 compute on
GPU/TPU.

    tfds build imagenet2012 --file_format=array_record --manual_dir=...   # once
    python train.py --config configs/imagenet_resnet50.py --workdir gs://.../r50
    ... --config.model.num_exits=0                      # its plain backbone (ResNet-50)
"""

from jee.config import base_config, smoke, unknown_variant


def get_config(arg=None):
    c = base_config()
    c.dataset.source = "tfds"
    c.dataset.name = "imagenet2012"
    c.dataset.test_split = "validation"
    c.dataset.image_size = 224
    c.dataset.val_size = 25000
    c.dataset.augment = "crop_flip"
    c.dataset.crop_padding = 16
    c.dataset.mean = (0.485, 0.456, 0.406)
    c.dataset.std = (0.229, 0.224, 0.225)
    c.dataset.num_workers = 16
    c.model.arch = "resnet50"
    c.model.num_exits = 4
    c.model.placement = "pareto"
    c.model.exit_type = "bnpool"
    c.model.dtype = "bfloat16"
    c.loss.kind = "v2"
    c.loss.lam = 1.0
    c.loss.warmup_epochs = 5.0
    c.optimizer.learning_rate = 0.1 * 1024 / 256  # linear scaling rule for batch 1024
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_epochs = 5.0
    c.batch_size = 1024
    c.eval_batch_size = 1024
    c.num_epochs = 90
    c.log_every_steps = 100
    if arg == "smoke":
        c.dataset.image_size = 32
        c.dataset.num_workers = 0
        c.model.arch = "resnet18"
        c.model.num_exits = 2
        c.model.dtype = "float32"
        smoke(c)
        c.max_steps = 2
        c.batch_size = 16
        c.eval_batch_size = 16
    elif arg:
        raise unknown_variant(arg, "smoke")
    return c
