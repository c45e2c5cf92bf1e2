"""Test set-up: 8 virtual CPU devices so sharded code paths run on one machine, and the
fixtures several test modules share."""

import os

import pytest

# Must happen before JAX initialises its backends.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")


@pytest.fixture(scope="session")
def digits_cascade(tmp_path_factory):
    """(cascade config, root) of the three digits cascade members, trained 12 steps each;
    shared by the cascade end-to-end and stream benchmark tests (training is their cost)."""
    from jee import train_lib
    from jee.config import load_config

    spec = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "configs", "digits_cascade.py")
    root = tmp_path_factory.mktemp("digits_cascade")
    config = load_config(f"{spec}:smoke")
    config.cascade.root = str(root)
    for name in config.cascade.names:
        member = load_config(f"{spec}:{name},smoke")
        member.max_steps = 12
        train_lib.train_and_evaluate(member, str(root / name))
    return config, root
