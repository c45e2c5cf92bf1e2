"""Tests for jee.data: every source, the val carve, and the train/eval grain pipelines."""

import gzip
import itertools
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from jee import data

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def make_cfg(**overrides) -> ml_collections.ConfigDict:
    cfg = dict(
        source="digits", name="digits", path="", data_dir=None, train_split="train",
        test_split="test", val_size=0.1, val_seed=0, augment="none", crop_padding=2,
        image_size=0, num_classes=0, mean=None, std=None, num_workers=0,
    )
    unknown = set(overrides) - set(cfg)
    assert not unknown, unknown
    cfg.update(overrides)
    return ml_collections.ConfigDict(cfg)


def take(iterator, n):
    return list(itertools.islice(iterator, n))


def write_indexed_npz(path, n_train=40, n_test=13, shape=(4, 5)):
    """Each image is filled with its own label, and labels are 0..n-1: rows identify examples."""
    x_train = np.broadcast_to(np.arange(n_train, dtype=np.uint8)[:, None, None],
                              (n_train, *shape)).copy()
    x_test = np.broadcast_to(np.arange(n_test, dtype=np.uint8)[:, None, None],
                             (n_test, *shape)).copy()
    np.savez(path, x_train=x_train, y_train=np.arange(n_train), x_test=x_test,
             y_test=np.arange(n_test))
    return path


def write_idx(path, array, type_byte=0x08):
    header = bytes([0, 0, type_byte, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


@pytest.fixture(scope="module")
def digits():
    return data.build(make_cfg())


# --- sources and splits ------------------------------------------------------------------------


def test_digits_sizes_shapes_and_content(digits):
    # 1797 digits; test = round(0.2 * 1797) = 359; val = round(0.1 * 1438) = 144.
    assert digits.num_examples("test") == 359
    assert digits.num_examples("val") == 144
    assert digits.num_examples("train") == 1797 - 359 - 144
    assert digits.image_shape == (8, 8, 1)
    assert digits.num_classes == 10
    assert digits.mean.shape == (1,) and digits.std.shape == (1,)

    # Together the three splits hold exactly sklearn's images (0..16 scaled to 0..255).
    from sklearn.datasets import load_digits

    raw = load_digits()
    want = np.concatenate([np.round(raw.images.reshape(-1, 64) * 255 / 16), raw.target[:, None]],
                          axis=1)
    got = np.array([
        np.append(src[i]["image"].reshape(-1), src[i]["label"])
        for src in digits.splits.values() for i in range(len(src))
    ])
    assert digits.splits["train"][0]["image"].dtype == np.uint8
    np.testing.assert_array_equal(np.unique(got, axis=0), np.unique(want, axis=0))
    assert len(got) == len(want)


def _split_rows(ds, split):
    src = ds.splits[split]
    return {(src[i]["image"].tobytes(), src[i]["label"]) for i in range(len(src))}


def test_val_is_disjoint_from_train_and_fixed_by_val_seed(tmp_path):
    # Unique images (pixel value == label) make each record identify one example.
    path = write_indexed_npz(tmp_path / "d.npz", n_train=50)
    a = data.build(make_cfg(source="npz", path=str(path), val_size=10, val_seed=3))
    b = data.build(make_cfg(source="npz", path=str(path), val_size=10, val_seed=3))
    c = data.build(make_cfg(source="npz", path=str(path), val_size=10, val_seed=4))
    val_a = {a.splits["val"][i]["label"] for i in range(10)}
    train_a = {a.splits["train"][i]["label"] for i in range(40)}
    assert not val_a & train_a
    assert val_a | train_a == set(range(50))
    assert val_a == {b.splits["val"][i]["label"] for i in range(10)}
    assert val_a != {c.splits["val"][i]["label"] for i in range(10)}


def test_digits_test_split_does_not_depend_on_val_seed(digits):
    other = data.build(make_cfg(val_seed=7, val_size=0.3))
    assert _split_rows(other, "test") == _split_rows(digits, "test")
    assert _split_rows(other, "val") != _split_rows(digits, "val")


@pytest.mark.parametrize("val_size, message", [(-1, ">= 0"), (2.5, "whole number"),
                                               (5000, "only 1438")])
def test_bad_val_size_is_rejected(val_size, message):
    with pytest.raises(ValueError, match=message):
        data.build(make_cfg(val_size=val_size))


def test_npz_nhw_uint8_and_nhwc_float(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (30, 6, 7), dtype=np.uint8)
    y_train = np.arange(30) % 3
    np.savez(tmp_path / "a.npz", x_train=x_train, y_train=y_train,
             x_test=x_train[:5], y_test=y_train[:5])
    ds = data.build(make_cfg(source="npz", path=str(tmp_path / "a.npz"), val_size=0))
    assert ds.image_shape == (6, 7, 1) and ds.num_classes == 3
    assert ds.num_examples("train") == 30 and ds.num_examples("val") == 0
    record = ds.splits["train"][4]
    np.testing.assert_array_equal(record["image"][..., 0], x_train[4])
    assert record["label"] == 1

    xf = rng.random((12, 5, 5, 3)).astype(np.float64)
    yf = np.array([0, 4] * 6)
    np.savez(tmp_path / "b.npz", x_train=xf, y_train=yf, x_test=xf[:3], y_test=yf[:3])
    ds = data.build(make_cfg(source="npz", path=str(tmp_path / "b.npz"), val_size=2))
    assert ds.image_shape == (5, 5, 3) and ds.num_classes == 5
    assert ds.num_examples("train") == 10 and ds.num_examples("test") == 3
    assert ds.splits["test"][1]["image"].dtype == np.float32
    np.testing.assert_allclose(ds.splits["test"][1]["image"], xf[1], rtol=1e-6)
    # Float images are taken as already in [0, 1], so their mean is the plain pixel mean.
    np.testing.assert_allclose(ds.mean, xf[ds.splits["train"].indices].mean(axis=(0, 1, 2)),
                               rtol=1e-5)


def test_image_size_resizes_array_sources(tmp_path):
    # Resizing a constant image must keep the constant (uint8 and float alike).
    gray = np.full((6, 8, 8), 100, np.uint8)
    rgb = np.full((6, 8, 8, 3), 0.25)
    for name, x in (("g.npz", gray), ("c.npz", rgb)):
        np.savez(tmp_path / name, x_train=x, y_train=np.arange(6) % 2, x_test=x[:2],
                 y_test=[0, 1])
    ds = data.build(make_cfg(source="npz", path=str(tmp_path / "g.npz"), val_size=0,
                             image_size=4))
    assert ds.image_shape == (4, 4, 1)
    np.testing.assert_array_equal(ds.splits["test"][1]["image"], np.full((4, 4, 1), 100))
    ds = data.build(make_cfg(source="npz", path=str(tmp_path / "c.npz"), val_size=1,
                             image_size=12))
    assert ds.image_shape == (12, 12, 3)
    np.testing.assert_allclose(ds.splits["val"][0]["image"], np.full((12, 12, 3), 0.25),
                               rtol=1e-6)
    batch = next(data.eval_batches(ds, "test", batch_size=4))
    assert batch["image"].shape == (4, 12, 12, 3) and batch["mask"].tolist() == [1, 1, 0, 0]
    assert list(data.eval_batches(ds, "val", batch_size=4))[0]["mask"].sum() == 1


def test_npz_missing_key_and_out_of_range_floats(tmp_path):
    np.savez(tmp_path / "m.npz", x_train=np.zeros((2, 3, 3), np.uint8), y_train=[0, 1],
             x_test=np.zeros((1, 3, 3), np.uint8))
    with pytest.raises(KeyError, match="y_test") as info:
        data.build(make_cfg(source="npz", path=str(tmp_path / "m.npz")))
    assert "x_train, y_train, x_test, y_test" in str(info.value)

    np.savez(tmp_path / "f.npz", x_train=np.full((4, 3, 3), 200.0), y_train=[0, 1, 0, 1],
             x_test=np.zeros((1, 3, 3)), y_test=[0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.build(make_cfg(source="npz", path=str(tmp_path / "f.npz"), val_size=0))


# --- validation: non-finite pixels, labels, class count, shapes --------------------------------


def write_npz(path, x_train=None, y_train=None, x_test=None, y_test=None):
    """A small float npz (10 classes, 3 examples each in train) with overridable arrays."""
    rng = np.random.default_rng(0)
    arrays = dict(
        x_train=rng.random((30, 4, 4)), y_train=np.arange(30) % 10,
        x_test=rng.random((12, 4, 4)), y_test=np.arange(12) % 10,
    )
    given = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    arrays.update({k: v for k, v in given.items() if v is not None})
    np.savez(path, **arrays)
    return str(path)


def build_error(cfg, error=ValueError) -> str:
    with pytest.raises(error) as info:
        data.build(cfg)
    message = str(info.value)
    assert "\n" not in message  # the CLI prints errors as one line
    return message


@pytest.mark.parametrize("split, bad", [("train", np.nan), ("test", np.nan), ("test", np.inf),
                                        ("train", -np.inf)])
def test_non_finite_pixels_are_refused_with_file_split_and_index(tmp_path, split, bad):
    images = np.random.default_rng(1).random((30 if split == "train" else 12, 4, 4))
    images[7, 2, 1] = bad
    images[9, 0, 0] = bad  # only the first bad image is named
    path = write_npz(tmp_path / "d.npz", **{f"x_{split}": images})
    message = build_error(make_cfg(source="npz", path=path, val_size=0))
    assert f"npz file {path}, split {split}: image 7 has non-finite pixels (NaN/Inf)" in message


def test_non_finite_check_comes_before_the_range_check(tmp_path):
    # A NaN next to out-of-range pixels must be reported as a NaN, not as a range problem.
    images = np.full((12, 4, 4), 3.0)
    images[4, 1, 1] = np.nan
    path = write_npz(tmp_path / "d.npz", x_test=images)
    assert "image 4 has non-finite" in build_error(make_cfg(source="npz", path=path))


def test_test_label_beyond_the_training_classes_is_an_error(tmp_path):
    y_test = np.arange(12) % 10
    y_test[5] = 57
    path = write_npz(tmp_path / "d.npz", y_test=y_test)
    message = build_error(make_cfg(source="npz", path=path))
    assert f"npz file {path}, split test: label 57 at index 5 is outside [0, 10)" in message
    assert "inferred from the largest training label, 9" in message
    assert "set config.dataset.num_classes" in message

    # An explicit class count makes it a valid label of a 60-class dataset (still one that
    # the training split never shows, hence the warning).
    with pytest.warns(UserWarning, match="test labels 57 never occur"):
        ds = data.build(make_cfg(source="npz", path=path, num_classes=60))
    assert ds.num_classes == 60
    assert ds.splits["test"][5]["label"] == 57


def test_test_only_class_above_the_train_maximum_is_an_error(tmp_path):
    # Train has classes 0..8; a test label of 9 would silently have added a tenth class.
    path = write_npz(tmp_path / "d.npz", y_train=np.arange(30) % 9)
    message = build_error(make_cfg(source="npz", path=path))
    assert "split test: label 9 at index 9 is outside [0, 9)" in message


def test_explicit_num_classes_below_a_train_label_is_an_error(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    message = build_error(make_cfg(source="npz", path=path, num_classes=8))
    assert "split train: label 8 at index 8 is outside [0, 8)" in message
    assert "from config.dataset.num_classes" in message
    assert "must be a whole number >= 0" in build_error(
        make_cfg(source="npz", path=path, num_classes=-1))


def test_negative_label_names_split_and_index(tmp_path):
    y_test = np.arange(12) % 10
    y_test[3] = -2
    path = write_npz(tmp_path / "d.npz", y_test=y_test)
    message = build_error(make_cfg(source="npz", path=path))
    assert f"npz file {path}, split test: label -2 at index 3 is negative" in message


def test_test_class_missing_from_train_is_a_warning(tmp_path):
    # Class 3 (and 6) never occur in train, but lie below its largest label 9: 10 classes.
    y_train = np.arange(30) % 10
    y_train[np.isin(y_train, (3, 6))] = 0
    path = write_npz(tmp_path / "d.npz", y_train=y_train)
    with pytest.warns(UserWarning, match=r"test labels 3, 6 never occur in the training split"):
        ds = data.build(make_cfg(source="npz", path=path))
    assert ds.num_classes == 10


def test_image_shape_differs_between_splits(tmp_path):
    path = write_npz(tmp_path / "d.npz", x_test=np.zeros((12, 4, 5)))
    message = build_error(make_cfg(source="npz", path=path))
    assert (f"npz file {path}: train images are (4, 4, 1) but test images are (4, 5, 1)"
            in message)

    # The folder source compares the first image of each split, so this fails in build and
    # not at the first evaluation after training.
    for split, shape in (("train", (5, 6)), ("test", (7, 6))):
        _write_png(tmp_path / "f" / split / "a" / "0.png", np.zeros(shape, np.uint8))
        _write_png(tmp_path / "f" / split / "b" / "0.png", np.zeros(shape, np.uint8))
    message = build_error(make_cfg(source="folder", path=str(tmp_path / "f"), val_size=0))
    assert "train images are 6x5 (WxH" in message and "test images are 6x7" in message
    ds = data.build(make_cfg(source="folder", path=str(tmp_path / "f"), val_size=0,
                             image_size=4))
    assert ds.splits["test"][0]["image"].shape == (4, 4, 3)

    # An explicit class count that disagrees with the folder's classes is an error too.
    message = build_error(make_cfg(source="folder", path=str(tmp_path / "f"), val_size=0,
                                   image_size=4, num_classes=3))
    assert "config.dataset.num_classes=3 but the folder source" in message
    assert "has 2 classes" in message


def test_num_classes_is_optional_in_old_configs_and_overridable_when_locked(tmp_path):
    from jee.config import base_config

    path = write_npz(tmp_path / "d.npz")
    old = make_cfg(source="npz", path=path)
    del old["num_classes"]  # configs saved before the key existed
    old.lock()
    assert data.build(old).num_classes == 10
    cfg = base_config()
    cfg.lock()
    cfg.dataset.source, cfg.dataset.path, cfg.dataset.num_classes = "npz", path, 12
    assert data.build(cfg.dataset).num_classes == 12


def test_idx_source_on_small_files(tmp_path):
    rng = np.random.default_rng(1)
    train_x = rng.integers(0, 256, (20, 4, 3), dtype=np.uint8)
    train_y = (np.arange(20) % 4).astype(np.uint8)
    test_x = rng.integers(0, 256, (6, 4, 3), dtype=np.uint8)
    test_y = np.array([3, 2, 1, 0, 1, 2], np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train_x)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train_y)
    # Uncompressed names are accepted too.
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test_x)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", test_y)
    ds = data.build(make_cfg(source="idx", path=str(tmp_path), val_size=5))
    assert ds.image_shape == (4, 3, 1) and ds.num_classes == 4
    assert (ds.num_examples("train"), ds.num_examples("val"), ds.num_examples("test")) == (15, 5, 6)
    for i in range(6):
        np.testing.assert_array_equal(ds.splits["test"][i]["image"][..., 0], test_x[i])
        assert ds.splits["test"][i]["label"] == test_y[i]


def test_idx_bad_magic_and_truncation(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte").write_bytes(b"\x12\x34\x08\x03" + bytes(12))
    for stem in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (bad / stem).write_bytes(b"")
    with pytest.raises(ValueError, match="magic number is 0x12340803"):
        data.build(make_cfg(source="idx", path=str(bad)))

    short = tmp_path / "short-idx3-ubyte"
    write_idx(short, np.zeros((3, 2, 2), np.uint8))
    short.write_bytes(short.read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(str(short))

    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        data.build(make_cfg(source="idx", path=str(tmp_path)))


def test_idx_real_fashion_mnist():
    if not os.path.isdir(FASHION_MNIST):
        pytest.skip(f"{FASHION_MNIST} absent (apt-get install dataset-fashion-mnist)")
    ds = data.build(make_cfg(source="idx", name="fashion_mnist", path=FASHION_MNIST,
                             val_size=5000, mean=(0.286,), std=(0.353,)))
    assert ds.num_examples("train") + ds.num_examples("val") == 60000
    assert ds.num_examples("val") == 5000
    assert ds.num_examples("test") == 10000
    assert ds.image_shape == (28, 28, 1) and ds.num_classes == 10


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_source(tmp_path):
    red = np.zeros((5, 6, 3), np.uint8)
    red[..., 0] = 200
    gray = np.full((5, 6), 77, np.uint8)  # a grayscale file must come out as RGB
    for split, n in (("train", 3), ("test", 1)):
        for k in range(n):
            _write_png(tmp_path / split / "b_red" / f"{k}.png", red)
            _write_png(tmp_path / split / "a_gray" / f"{k}.png", gray)
    (tmp_path / "train" / "a_gray" / "notes.txt").write_text("not an image")

    ds = data.build(make_cfg(source="folder", path=str(tmp_path), val_size=0))
    assert ds.num_classes == 2 and ds.image_shape == (5, 6, 3)
    assert ds.num_examples("train") == 6 and ds.num_examples("test") == 2
    by_label = {ds.splits["test"][i]["label"]: ds.splits["test"][i]["image"] for i in range(2)}
    # Classes are the sorted folder names: a_gray -> 0, b_red -> 1.
    np.testing.assert_array_equal(by_label[0], np.full((5, 6, 3), 77, np.uint8))
    np.testing.assert_array_equal(by_label[1], red)

    resized = data.build(make_cfg(source="folder", path=str(tmp_path), val_size=0, image_size=4))
    assert resized.image_shape == (4, 4, 3)
    assert resized.splits["train"][0]["image"].shape == (4, 4, 3)
    batch = next(data.train_batches(resized, make_cfg(augment="crop_flip"), batch_size=4, seed=0))
    assert batch["image"].shape == (4, 4, 4, 3)

    _write_png(tmp_path / "train" / "a_gray" / "odd.png", np.zeros((9, 9), np.uint8))
    # Given mean/std, build opens only the first image, so the odd size shows up when read.
    odd = data.build(make_cfg(source="folder", path=str(tmp_path), val_size=0,
                              mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))
    with pytest.raises(ValueError, match="image_size"):
        [odd.splits["train"][i] for i in range(odd.num_examples("train"))]

    _write_png(tmp_path / "test" / "c_extra" / "0.png", red)
    with pytest.raises(ValueError, match="class folders differ"):
        data.build(make_cfg(source="folder", path=str(tmp_path)))


def test_unknown_source_lists_known_ones():
    with pytest.raises(ValueError, match="digits, npz, idx, folder, tfds"):
        data.build(make_cfg(source="csv"))


# --- tfds --------------------------------------------------------------------------------------


def test_tfds_mock_data_source(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=24):
        ds = data.build(make_cfg(source="tfds", name="mnist", data_dir=str(tmp_path),
                                 val_size=4, augment="crop"))
        assert ds.image_shape == (28, 28, 1) and ds.num_classes == 10
        assert ds.num_examples("train") == 20 and ds.num_examples("test") == 24
        batch = next(data.train_batches(ds, make_cfg(augment="crop"), batch_size=8, seed=0))
        evals = list(data.eval_batches(ds, "test", batch_size=16))
    assert batch["image"].shape == (8, 28, 28, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
    assert [b["mask"].sum() for b in evals] == [16, 8]


def test_tfds_unprepared_data_dir_says_how_to_build(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError) as info:
        data.build(make_cfg(source="tfds", name="mnist", data_dir=str(tmp_path)))
    message = str(info.value)
    assert "tfds build mnist --file_format=array_record" in message
    assert str(tmp_path) in message and "config.dataset.data_dir" in message


def test_tfds_unknown_name(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match="unknown tfds dataset 'mnistt'.*mnist"):
        data.build(make_cfg(source="tfds", name="mnistt", data_dir=str(tmp_path)))


# --- pipelines ---------------------------------------------------------------------------------


def test_train_epoch_is_a_permutation_that_changes_per_epoch(tmp_path):
    path = write_indexed_npz(tmp_path / "d.npz", n_train=43)
    ds = data.build(make_cfg(source="npz", path=str(path), val_size=0))
    # 43 // 10 = 4 batches per epoch; 3 leftover examples dropped each epoch.
    assert data.steps_per_epoch(ds, 10) == 4
    batches = take(data.train_batches(ds, make_cfg(), batch_size=10, seed=5), 8)
    epochs = [np.concatenate([b["label"] for b in batches[e * 4:(e + 1) * 4]]) for e in (0, 1)]
    for labels in epochs:
        assert len(set(labels.tolist())) == 40 and set(labels.tolist()) <= set(range(43))
    assert epochs[0].tolist() != epochs[1].tolist()
    other_seed = take(data.train_batches(ds, make_cfg(), batch_size=10, seed=6), 4)
    assert np.concatenate([b["label"] for b in other_seed]).tolist() != epochs[0].tolist()


def test_resume_from_start_step_matches_uninterrupted_run(digits):
    cfg = make_cfg(augment="crop_flip")
    spe = data.steps_per_epoch(digits, 32)  # 1294 // 32 = 40
    assert spe == 40
    fresh = take(data.train_batches(digits, cfg, batch_size=32, seed=3), spe + 3)
    k = spe - 2  # the resumed stream crosses an epoch boundary
    resumed = take(data.train_batches(digits, cfg, batch_size=32, seed=3, start_step=k), 5)
    for want, got in zip(fresh[k:], resumed, strict=True):
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])


def test_process_shards_concatenate_to_the_global_batch(digits):
    cfg = make_cfg(augment="crop_flip")
    whole = take(data.train_batches(digits, cfg, batch_size=16, seed=2, start_step=7), 3)
    parts = [take(data.train_batches(digits, cfg, batch_size=16, seed=2, start_step=7,
                                     process_index=p, process_count=2), 3) for p in range(2)]
    for step, want in enumerate(whole):
        assert parts[0][step]["image"].shape == (8, 8, 8, 1)
        for key in ("image", "label"):
            np.testing.assert_array_equal(
                np.concatenate([parts[0][step][key], parts[1][step][key]]), want[key])
    with pytest.raises(ValueError, match="not divisible"):
        data.train_batches(digits, cfg, batch_size=15, seed=0, process_index=0, process_count=2)


def test_crop_flip_outputs_are_shifted_or_flipped_copies(tmp_path):
    image = np.arange(1, 37, dtype=np.uint8).reshape(6, 6) * 7  # all pixels distinct, non-zero
    x = np.repeat(image[None], 8, axis=0)
    np.savez(tmp_path / "p.npz", x_train=x, y_train=np.zeros(8, int), x_test=x[:1],
             y_test=np.zeros(1, int))
    ds = data.build(make_cfg(source="npz", path=str(tmp_path / "p.npz"), val_size=0,
                             mean=(0.0,), std=(1.0,)))
    pad = 2
    padded = np.pad(image, pad)
    candidates = {}
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            crop = padded[top:top + 6, left:left + 6]
            candidates[crop.tobytes()] = (top, left, False)
            candidates[crop[:, ::-1].copy().tobytes()] = (top, left, True)

    def seen(augment):
        cfg = make_cfg(augment=augment, crop_padding=pad)
        batches = take(data.train_batches(ds, cfg, batch_size=8, seed=0), 8)
        out = []
        for b in batches:
            pixels = np.round(b["image"][..., 0] * 255).astype(np.uint8)  # mean 0, std 1
            out += [candidates.get(p.tobytes()) for p in pixels]
        return out

    flips = seen("crop_flip")
    assert None not in flips
    assert len({(t, le) for t, le, _ in flips}) > 5  # many different offsets are drawn
    assert {f for _, _, f in flips} == {False, True}
    crops = seen("crop")
    assert None not in crops and not any(f for _, _, f in crops)
    assert len({(t, le) for t, le, _ in crops}) > 5
    assert set(seen("none")) == {(pad, pad, False)}


def test_eval_batches_cover_each_example_once_with_constant_shapes(tmp_path):
    # Train holds every test label (0..22): a test label above train's largest is an error.
    path = write_indexed_npz(tmp_path / "d.npz", n_train=30, n_test=23)
    ds = data.build(make_cfg(source="npz", path=str(path), val_size=0))
    whole = list(data.eval_batches(ds, "test", batch_size=8))
    assert len(whole) == 3
    assert {b["image"].shape for b in whole} == {(8, 4, 5, 1)}
    labels = np.concatenate([b["label"][b["mask"]] for b in whole])
    assert sorted(labels.tolist()) == list(range(23))
    assert not whole[-1]["mask"][7] and whole[-1]["mask"][6]

    parts = [list(data.eval_batches(ds, "test", batch_size=8, process_index=p, process_count=2))
             for p in range(2)]
    for i, want in enumerate(whole):
        assert parts[0][i]["image"].shape == (4, 4, 5, 1)
        for key in ("image", "label", "mask"):
            np.testing.assert_array_equal(
                np.concatenate([parts[0][i][key], parts[1][i][key]]), want[key])


def test_normalised_digits_have_zero_mean_unit_std(digits):
    images = np.concatenate([b["image"][b["mask"]]
                             for b in data.eval_batches(digits, "train", batch_size=256)])
    assert images.shape == (digits.num_examples("train"), 8, 8, 1)
    np.testing.assert_allclose(images.mean(axis=(0, 1, 2)), [0.0], atol=1e-4)
    np.testing.assert_allclose(images.std(axis=(0, 1, 2)), [1.0], atol=1e-4)
    # The mean/std themselves come from the raw pixels (in [0, 1] units) of the train split.
    raw = np.stack([digits.splits["train"][i]["image"]
                    for i in range(digits.num_examples("train"))]) / 255.0
    np.testing.assert_allclose(digits.mean, [raw.mean()], rtol=1e-5)
    np.testing.assert_allclose(digits.std, [raw.std()], rtol=1e-5)


def test_worker_processes_give_the_same_batches(digits):
    cfg = make_cfg(augment="crop_flip")
    local = take(data.train_batches(digits, cfg, batch_size=32, seed=4, start_step=3), 4)
    cfg.num_workers = 1
    iterator = data.train_batches(digits, cfg, batch_size=32, seed=4, start_step=3)
    try:
        remote = [{k: np.array(v) for k, v in b.items()} for b in take(iterator, 4)]
    finally:
        iterator.close()
    for want, got in zip(local, remote, strict=True):
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])


def test_bad_mean_std_and_augment_are_rejected(digits):
    with pytest.raises(ValueError, match="1 channel"):
        data.build(make_cfg(mean=(0.5, 0.5, 0.5), std=(0.2,)))
    with pytest.raises(ValueError, match="crop_flip"):
        data.train_batches(digits, make_cfg(augment="mixup"), batch_size=8, seed=0)
