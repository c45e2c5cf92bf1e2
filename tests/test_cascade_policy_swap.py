"""A cascade engine's policy is an argument of its programs (jee.infer.policy_args).

Giving an engine another operating point of the same structure (a threshold policy at another
threshold) must compile nothing and give exactly what an engine built for that point gives;
one of another structure compiles at once on an idle stream and is refused while rows are in
flight; a policy object that is not a pytree of arrays is still compiled in.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jee.cascade.graph import make_graph
from jee.cascade.policy import ThresholdCascadePolicy
from jee.infer.cascade import CascadeEngine, MaskedCascadeEngine
from jee.infer.policy_args import argument_policy, policy_argument
from jee.infer.stream_cascade import StreamCascadeEngine
from tests.test_infer_cascade import ConfidenceRoutes, linear_models, make_inputs, make_weights

NUM_MODELS, BATCH = 3, 8


def thresholds(value, feature="max_prob"):
    return ThresholdCascadePolicy(jnp.asarray(value, jnp.float32), make_graph(NUM_MODELS),
                                  feature, feature == "max_prob", feature)


def results(engine, x):
    if isinstance(engine, StreamCascadeEngine):
        return jax.device_get(engine.run(iter([x[:5], x[5:]])))
    return jax.device_get(engine(x))


def assert_same(a, b):
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)


@pytest.fixture(scope="module")
def setting():
    return linear_models(make_weights(NUM_MODELS)), make_inputs(40, 1.5)


@pytest.mark.parametrize("kind", ["masked", "bucketed", "stream"])
def test_another_threshold_compiles_nothing_and_equals_a_fresh_engine(setting, kind):
    models, x = setting
    make = {"masked": MaskedCascadeEngine, "bucketed": CascadeEngine,
            "stream": lambda m, p: StreamCascadeEngine(m, p, batch_size=BATCH)}[kind]
    engine = make(models, thresholds(0.5))
    first = results(engine, x)
    traces, programs = engine.traces, engine.cache_size()
    engine.policy = thresholds(0.9)
    swapped = results(engine, x)
    assert (engine.traces, engine.cache_size()) == (traces, programs)
    assert_same(swapped, results(make(models, thresholds(0.9)), x))
    # The thresholds route differently here, so a stale program would have been caught.
    assert not np.array_equal(first[2], swapped[2])
    assert engine.policy.threshold == pytest.approx(0.9)


def test_stream_compiles_a_new_structure_at_once_and_only_when_idle(setting):
    models, x = setting
    engine = StreamCascadeEngine(models, thresholds(0.5), batch_size=BATCH)
    results(engine, x)
    traces = engine.traces
    entropy = thresholds(0.4, "entropy")  # another static field: another program structure
    engine.push(x[:3])
    with pytest.raises(RuntimeError, match="flush"):
        engine.policy = entropy
    assert engine.policy.feature == "max_prob"  # refused: nothing changed
    engine.drain()
    engine.policy = entropy
    compiled = engine.traces
    assert compiled > traces  # compiled on assignment, as on the first push
    assert_same(results(engine, x), results(MaskedCascadeEngine(models, entropy), x))
    assert engine.traces == compiled


def test_a_policy_that_is_no_pytree_is_compiled_in(setting):
    models, x = setting
    routes = ConfidenceRoutes(NUM_MODELS)
    argument = policy_argument(routes)
    assert argument is not routes and argument_policy(argument) is routes
    pytree = thresholds(0.5)
    assert policy_argument(pytree) is pytree
    assert argument_policy(policy_argument(None)) is None
    engine = MaskedCascadeEngine(models, routes)
    engine(x)
    engine.policy = routes  # the same object: the same program
    engine(x)
    assert engine.traces == 1
    engine.policy = ConfidenceRoutes(NUM_MODELS)  # another object: compiled again
    engine(x)
    assert engine.traces == 2
