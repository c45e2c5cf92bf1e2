"""Reading ``config.dataset``: a required field, and the ``num_classes`` setting.

The fields and their defaults are listed in `jee.config.base_config`.
"""

from __future__ import annotations

import numpy as np


def _field(cfg, name: str):
    try:
        return cfg[name]
    except (KeyError, AttributeError) as err:
        raise KeyError(
            f"config.dataset.{name} is missing; every dataset config must set it "
            "(see jee/config.py for the list of fields)"
        ) from err


def _num_classes_setting(cfg) -> int:
    """config.dataset.num_classes: 0 (or absent, as in configs written before it existed) means
    infer the class count from the source."""
    try:
        value = cfg["num_classes"]
    except (KeyError, AttributeError):
        return 0
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(
            f"config.dataset.num_classes must be a whole number >= 0 (0 = infer from the "
            f"training labels), got {value!r}"
        )
    return int(value)
