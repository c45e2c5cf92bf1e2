"""Bad input ends train.py / evaluate.py with exit code 2, one line naming the cause, and no
new files."""

import os

import numpy as np
import pytest

from tests import procs

SMOKE = f"{procs.DIGITS}:smoke"


def _files(root) -> set[str]:
    out = set()
    for base, dirs, files in os.walk(root):
        out.update(os.path.join(base, n) for n in dirs + files)
    return out


def _npz(path, *, train_nan=False, test_nan=False, test_label=None):
    rng = np.random.default_rng(0)
    x_train = rng.random((64, 8, 8, 1)).astype(np.float32)
    x_test = rng.random((16, 8, 8, 1)).astype(np.float32)
    y_train = np.arange(64) % 10
    y_test = np.arange(16) % 10
    if train_nan:
        x_train[5, 2, 3, 0] = np.nan
    if test_nan:
        x_test[3, 0, 0, 0] = np.inf
    if test_label is not None:
        y_test[7] = test_label
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return ["--config.dataset.source=npz", f"--config.dataset.path={path}",
            "--config.dataset.val_size=16", "--config.batch_size=16"]


def _check(result, *words):
    assert result.returncode == 2, result.stderr
    lines = procs.error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


CASES = {
    "nan_train": lambda d: (_npz(d / "a.npz", train_nan=True), ["a.npz", "train", "image 5",
                                                                 "non-finite"]),
    "inf_test": lambda d: (_npz(d / "b.npz", test_nan=True), ["b.npz", "test", "image 3",
                                                               "non-finite"]),
    "label_57": lambda d: (_npz(d / "c.npz", test_label=57), ["c.npz", "label 57", "index 7",
                                                               "num_classes"]),
    "unknown_key": lambda d: (["--config.model.widht=3"], ["model.widht", "model.width"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_train_input_is_one_line_and_leaves_nothing(case, data_dir, tmp_path):
    extra, words = CASES[case](data_dir)
    workdir = tmp_path / "run"
    before = _files(tmp_path)
    _check(procs.run("train.py", SMOKE, workdir, *extra), *words)
    assert _files(tmp_path) == before


def test_missing_config_file(tmp_path):
    _check(procs.run("train.py", str(tmp_path / "nope.py"), tmp_path / "run"), "nope.py",
           "does not exist")
    assert not (tmp_path / "run").exists()


def test_workdir_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    _check(procs.run("train.py", SMOKE, path), str(path), "is a file")
    _check(procs.run("evaluate.py", SMOKE, path), str(path), "is a file")
    assert _files(tmp_path) == {str(path)}


def _read_only_dir(tmp_path):
    """A directory this process cannot write to (root ignores permission bits: use sysfs)."""
    if os.geteuid() == 0:
        if not os.path.isdir("/sys/kernel"):
            pytest.skip("running as root without /sys/kernel to stand for a read-only dir")
        return "/sys/kernel"
    path = tmp_path / "ro"
    path.mkdir()
    path.chmod(0o555)
    return str(path)


def test_read_only_workdir(tmp_path):
    ro = _read_only_dir(tmp_path)
    before = _files(ro) if not ro.startswith("/sys") else None
    _check(procs.run("train.py", SMOKE, os.path.join(ro, "run")), "not writable")
    _check(procs.run("train.py", SMOKE, ro), ro, "not writable")
    if before is not None:
        assert _files(ro) == before
    else:
        assert not os.path.exists(os.path.join(ro, "run"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trained")
    r = procs.run("train.py", SMOKE, workdir)
    assert r.returncode == 0, r.stderr
    return workdir


def test_benchmark_batch_larger_than_the_split(trained):
    before = _files(trained)
    r = procs.run("evaluate.py", SMOKE, trained, "--benchmark", "--batch_size", "1000")
    _check(r, "--batch_size 1000", "359 examples", "--allow_padding")
    assert _files(trained) == before


def test_evaluate_missing_checkpoint_step(trained):
    before = _files(trained)
    _check(procs.run("evaluate.py", SMOKE, trained, "--step", "3"), "no checkpoint at step 3")
    assert _files(trained) == before
