"""Early-exit ResNet family: backbones, exit heads, placement and cost accounting."""

from jee.models.eenet import (
    EarlyExitNet,
    apply_backbone,
    apply_segment,
    build_eenet,
    count_params,
    forward,
    split,
)

__all__ = ["EarlyExitNet", "apply_backbone", "apply_segment", "build_eenet", "count_params",
           "forward", "split"]
