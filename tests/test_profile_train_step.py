"""scripts/profile_train_step.py on a tiny network: its convolution census matches the model,
and every part it times is there (the figures themselves are benchmarks, not tested)."""

from flax import nnx

from jee.config import load_config
from jee.runs import model_for_config
from scripts import profile_train_step


def test_profile_counts_every_convolution_of_the_step():
    config = "configs/digits.py:smoke"
    r = profile_train_step.main(["--config", config, "--batch", "8", "--repeats", "1",
                                 "--pipeline_config", config, "--pipeline_steps", "2"])
    model = model_for_config(load_config(config))
    convs = sum(isinstance(node, nnx.Conv) for _, node in nnx.iter_graph(model))
    assert convs > 0
    # Forward: each convolution once; backward: each kernel's gradient, and the gradient of
    # each convolution's input except the first's (the image gets no gradient).
    n = r["network"]
    assert n["convolutions"]["count"] == 3 * convs - 1
    assert n["hlo"]["convolution"] >= 2 * convs
    for key in ("step_s", "plain_step_s", "forward_s", "forward_backward_s"):
        assert n[key] > 0, key
    assert r["pipeline"]["fed_s_per_step"] > 0 and r["pipeline"]["resident_s_per_step"] > 0
