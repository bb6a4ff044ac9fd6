"""Keras files into our trees: every format gives the tree the Keras model itself gives;
missing layers, wrong shapes and other families fail naming the first offending tensor;
unreadable files fail clearly; nothing is ever unpickled."""
from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from mobilenet_jax.weights import WeightsConversionError, WeightsFileError, convert_keras
from tests._keras_weights import random_keras_model
from tests.test_weights_keras import ours_for

V1 = ("mobilenet_v1", dict(width=0.25), 32)
V2 = ("mobilenet_v2", dict(width=0.35), 48)
XCEPTION = ("xception", dict(), 71)


def _keras(case):
    name, variant, resolution = case
    return random_keras_model(name, resolution, **variant)


def write_keras2_h5(model, path: str) -> None:
    """A Keras 2 style weights file, like those keras.applications downloads: groups named
    after layers, `weight_names` 'layer/var:0', DepthwiseConv2D kernels called
    'depthwise_kernel', automatic names counted from 1 (conv2d_1, batch_normalization_1)."""
    import keras

    renames, counts = {}, {}
    for layer in model.layers:
        for stem in ("conv2d", "batch_normalization"):
            if layer.name == stem or layer.name.startswith(stem + "_") and layer.name[len(stem) + 1:].isdigit():
                counts[stem] = counts.get(stem, 0) + 1
                renames[layer.name] = f"{stem}_{counts[stem]}"
    with h5py.File(path, "w") as f:
        names = []
        for layer in model.layers:
            name = renames.get(layer.name, layer.name)
            names.append(name.encode())
            g = f.create_group(name)
            weight_names = []
            for v in layer.weights:
                var = v.name
                if isinstance(layer, keras.layers.DepthwiseConv2D) and var == "kernel":
                    var = "depthwise_kernel"
                weight_names.append(f"{name}/{var}:0".encode())
                g.create_dataset(f"{name}/{var}:0", data=np.asarray(v.numpy()))
            g.attrs["weight_names"] = weight_names
        f.attrs["layer_names"] = names
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"


@pytest.fixture(scope="module")
def v1_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("v1")
    model = _keras(V1)
    files = {
        "weights.h5": str(d / "m.weights.h5"),
        "keras": str(d / "m.keras"),
        "legacy_model.h5": str(d / "m.h5"),
        "keras2.h5": str(d / "keras2.h5"),
    }
    model.save_weights(files["weights.h5"])
    model.save(files["keras"])
    model.save(files["legacy_model.h5"])
    write_keras2_h5(model, files["keras2.h5"])
    return files


def _assert_same_tree(a, b):
    import jax

    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert x.dtype == np.float32 and np.array_equal(x, y)


@pytest.mark.parametrize("fmt", ["weights.h5", "keras", "legacy_model.h5", "keras2.h5"])
def test_every_file_format_gives_the_models_tree(v1_files, fmt):
    name, variant, _ = V1
    model = ours_for(name, variant)
    _assert_same_tree(convert_keras(v1_files[fmt], model), convert_keras(_keras(V1), model))


def test_xception_shortcuts_map_by_order_in_keyed_and_keras2_files(tmp_path):
    """Xception's shortcut layers have automatic names (conv2d, conv2d_1 / conv2d_1, ...):
    mapped by graph order, in Keras 3 class-keyed and Keras 2 name-keyed files alike."""
    name, variant, _ = XCEPTION
    reference = _keras(XCEPTION)
    model = ours_for(name, variant)
    direct = convert_keras(reference, model)
    reference.save_weights(str(tmp_path / "x.weights.h5"))
    write_keras2_h5(reference, str(tmp_path / "x2.h5"))
    _assert_same_tree(convert_keras(str(tmp_path / "x.weights.h5"), model), direct)
    _assert_same_tree(convert_keras(str(tmp_path / "x2.h5"), model), direct)


def _copy(src: str, dst) -> str:
    with open(src, "rb") as a, open(dst, "wb") as b:
        b.write(a.read())
    return str(dst)


def test_missing_layer_is_named(v1_files, tmp_path):
    model = ours_for(*V1[:2])
    path = _copy(v1_files["keras2.h5"], tmp_path / "missing.h5")
    with h5py.File(path, "a") as f:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs["layer_names"]]
        f.attrs["layer_names"] = [n.encode() for n in names if n != "conv_pw_3_bn"]
        del f["conv_pw_3_bn"]
    with pytest.raises(WeightsConversionError, match=r"first problem: missing Keras layer for tensor conv_pw_3_bn/gamma") as e:
        convert_keras(path, model)
    assert "conv_pw_3_bn/moving_variance" in " ".join(e.value.missing)
    # Keras 3 files key layers by class and rank: the first absent rank is named.
    path = _copy(v1_files["weights.h5"], tmp_path / "missing.weights.h5")
    with h5py.File(path, "a") as f:
        del f["layers/depthwise_conv2d_12"]
    with pytest.raises(WeightsConversionError, match=r"missing Keras layer for tensor conv_dw_13/kernel \(expected at layers/depthwise_conv2d_12/vars/0\)"):
        convert_keras(path, model)


def test_wrong_shape_is_named(v1_files, tmp_path):
    model = ours_for(*V1[:2])
    path = _copy(v1_files["keras2.h5"], tmp_path / "shape.h5")
    with h5py.File(path, "a") as f:
        key = "conv_pw_2/conv_pw_2/kernel:0"
        shape = f[key].shape
        del f[key]
        f.create_dataset(key, data=np.zeros(shape[:3] + (shape[3] + 1,), np.float32))
    with pytest.raises(WeightsConversionError, match=r"first problem: mis-shaped tensor conv_pw_2/kernel: file \(1, 1, 16, 33\), expected \(1, 1, 16, 32\)"):
        convert_keras(path, model)


def test_other_width_or_family_is_refused_naming_the_first_tensor(v1_files, tmp_path):
    with pytest.raises(WeightsConversionError, match=r"first problem: mis-shaped tensor conv1/kernel \(stored as layers/conv2d/vars/0\): file \(3, 3, 3, 8\), expected \(3, 3, 3, 16\)"):
        convert_keras(v1_files["weights.h5"], ours_for("mobilenet_v1", dict(width=0.5)))
    v2 = _keras(V2)
    with pytest.raises(WeightsConversionError, match=r"first problem: missing Keras layer for tensor conv1/kernel .* looks like mobilenet_v2"):
        convert_keras(v2, ours_for(*V1[:2]))
    v2.save_weights(str(tmp_path / "v2.weights.h5"))
    with pytest.raises(WeightsConversionError, match=r"first problem: mis-shaped tensor conv1/kernel"):
        convert_keras(str(tmp_path / "v2.weights.h5"), ours_for(*V1[:2]))
    with pytest.raises(WeightsConversionError, match=r"first problem: missing Keras layer for tensor block1_conv1/kernel"):
        convert_keras(v1_files["keras"], ours_for(*XCEPTION[:2]))


def test_variants_keras_lacks_are_refused():
    with pytest.raises(WeightsConversionError, match="shortcut='none'"):
        convert_keras(_keras(V2), ours_for("mobilenet_v2", dict(width=0.35), shortcut="none"))


def test_unreadable_files_fail_clearly(v1_files, tmp_path):
    model = ours_for(*V1[:2])
    for fmt in ("weights.h5", "keras", "keras2.h5"):
        data = open(v1_files[fmt], "rb").read()
        truncated = tmp_path / f"truncated.{fmt}"
        truncated.write_bytes(data[: len(data) // 2])
        with pytest.raises(WeightsFileError, match="truncated or corrupt|not a readable|neither"):
            convert_keras(str(truncated), model)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not a weights file at all" * 10)
    with pytest.raises(WeightsFileError, match="neither HDF5"):
        convert_keras(str(junk), model)
    with pytest.raises(WeightsFileError, match="no such file"):
        convert_keras(str(tmp_path / "absent.h5"), model)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(WeightsFileError, match="not Keras weights"):
        convert_keras(str(other), model)


def test_nothing_is_unpickled(v1_files, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(np, "load", refuse)
    model = ours_for(*V1[:2])
    for path in v1_files.values():
        convert_keras(path, model)
