"""Loading configs: ``path/to/config.py[:variant]`` files, derived variants, and key checks.

A config file defines ``get_config(arg)`` returning a ConfigDict that starts from
:func:`jee.defaults.base_config`, so every key a run may set exists there, and an override of
a key that does not exist is refused with the closest existing keys.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Callable, Iterator
from typing import Any

import ml_collections


class ConfigError(ValueError):
    """A config file, variant or key given by the user is wrong; the message says how."""


def load_config(spec: str) -> ml_collections.ConfigDict:
    """The config of ``path/to/config.py[:variant]`` (the path relative to the working
    directory, as for ``--config``)."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} (from {spec!r}) does not exist; give its path "
                          "relative to the working directory, or absolute (e.g. "
                          "configs/digits.py)")
    module_spec = importlib.util.spec_from_file_location(
        f"jee_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} defines no get_config(arg)")
    return module.get_config(arg or None)


def dotted_keys(config: ml_collections.ConfigDict, prefix: str = "") -> Iterator[str]:
    """Every key of ``config``, nested ones as ``a.b.c``, sections included."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, ml_collections.ConfigDict):
            yield from dotted_keys(value, name + ".")


def check_key(config: ml_collections.ConfigDict, key: str, where: str) -> None:
    """Raises :class:`ConfigError` naming ``key`` and its closest existing keys if ``config``
    has no such (dotted) key."""
    node = config
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            keys = list(dotted_keys(config))
            close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
            if not close:  # a misspelt leaf under a right section: match on the leaf alone
                leaf = key.rsplit(".", 1)[-1]
                close = [k for k in keys if k.rsplit(".", 1)[-1] in
                         difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1] for k in keys],
                                                   n=3, cutoff=0.6)][:3]
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ConfigError(f"unknown config key {key!r} in {where}{hint}")
        node = node[part]


def variant_of(path: str, overrides: dict[str, Any]) -> Callable[[], ml_collections.ConfigDict]:
    """A builder of the config at ``path`` with dotted-key ``overrides`` applied
    (``{"model.arch": "resnet8"}``); a key the config does not have is an error."""
    def build() -> ml_collections.ConfigDict:
        c = load_config(path)
        for key, value in overrides.items():
            check_key(c, key, f"the overrides of {path}")
            *parents, leaf = key.split(".")
            node = c
            for name in parents:
                node = node[name]
            node[leaf] = value
        return c
    return build
