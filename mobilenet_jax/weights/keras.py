"""keras.applications weights into our parameter trees, tensor by tensor, checked.

`convert_keras(source, model)` returns `{"params", "batch_stats"}` for one of our networks
from a Keras model object or a Keras file:

- `.weights.h5` (Keras 3 `save_weights`): tensors at `layers/<class>_<k>/vars/<i>`, keyed
  by the layer's class and its rank among the model's layers of that class;
- legacy `.h5` (Keras 2 `save_weights` / `model.save`, and the files keras.applications
  downloads to `~/.keras/models`): groups named after the layers, `weight_names` attributes;
- `.keras` (Keras 3 `model.save`): a zip holding `config.json` (read as JSON, for the
  layer names) and `model.weights.h5`.

Nothing is unpickled or deserialised into Keras objects: files are read with h5py, zipfile
and json only. The map from Keras layers to our modules is explicit (`keras_layers`: one
`KerasLayer` per Keras layer with weights, in Keras's `model.layers` order); layouts are
converted where they differ (depthwise kernels (kh, kw, C, M) -> (kh, kw, 1, C*M); 1x1 convs
that we implement as Dense lose their 1x1 spatial axes). Every missing, unexpected and
mis-shaped tensor is reported by name, and no partial tree is ever returned.

Layer semantics are matched by configuring our networks (`keras_model_overrides`), never by
special cases here: MobileNetV1 needs `keras_padding=True` (Keras pads its stride-2
depthwise convs ((0, 1), (0, 1))); MobileNetV2/V3 stride-2 padding, BatchNorm epsilon 1e-3
and the 1280/1024-channel rules are already Keras's. Keras's MobileNetV3 rescales [0, 255]
inputs inside the network (`include_preprocessing=True`); its Rescaling layer has no
weights, so the converted network takes our usual [-1, 1] inputs unless it is built with
`rescale_inputs=True`.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import zipfile
from typing import Any, Literal, Optional, Sequence, Union

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax import paths
from mobilenet_jax.errors import UserError
from mobilenet_jax.models.registry import ModelConfigError

from mobilenet_jax.models.mobilenet_v1 import MobileNetV1
from mobilenet_jax.models.mobilenet_v2 import MobileNetV2
from mobilenet_jax.models.mobilenet_v3 import MobileNetV3, MobileNetV3Large, MobileNetV3Small
from mobilenet_jax.models.xception import MODULES, Xception

Kind = Literal["conv", "conv_bias", "conv_as_dense", "depthwise", "separable", "bn", "dense"]

#: Fields that give our networks Keras's layer semantics (applied by the converter CLI and
#: recorded in the checkpoint's config, so that the trainer and the evaluator rebuild the
#: same function). BatchNorm momentum only matters when training goes on from the weights.
KERAS_SEMANTICS: dict[str, dict[str, Any]] = {
    "mobilenet_v1": {"keras_padding": True, "bn_momentum": 0.99},
    "mobilenet_v2": {"bn_momentum": 0.999},
    "mobilenet_v3_large": {"bn_momentum": 0.999},
    "mobilenet_v3_small": {"bn_momentum": 0.999},
    "xception": {"bn_momentum": 0.99},
}


class WeightsFileError(UserError, ValueError):
    """A file that cannot be read as Keras weights (corrupt, truncated, another format)."""


class WeightsConversionError(UserError, ValueError):
    """Keras weights that do not fit the requested network. `first` names the first
    offending tensor; `missing`, `unexpected`, `mismatched` and `uncovered` list them all."""

    def __init__(self, message: str, *, first: str, missing: Sequence[str] = (),
                 unexpected: Sequence[str] = (), mismatched: Sequence[str] = (),
                 uncovered: Sequence[str] = ()):
        super().__init__(message)
        self.first = first
        self.missing, self.unexpected = list(missing), list(unexpected)
        self.mismatched, self.uncovered = list(mismatched), list(uncovered)


def keras_model_overrides(name: str) -> dict[str, Any]:
    """The `create_model` fields that reproduce keras.applications' semantics for `name`."""
    if name not in KERAS_SEMANTICS:
        raise ModelConfigError(f"no Keras equivalent of {name!r}; known: {sorted(KERAS_SEMANTICS)}")
    return dict(KERAS_SEMANTICS[name])


# ------------------------------------------------------------------------------------------
# Tensors of each kind of Keras layer, and their layout in our modules
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Tensor:
    keras_name: str  # the Keras variable name ("kernel", "gamma", ...)
    collection: str  # "params" or "batch_stats"
    path: str  # below the layer's target module
    layout: str = "same"  # "same" | "depthwise" | "squeeze"
    aliases: tuple[str, ...] = ()  # other versions' names for it

    @property
    def names(self) -> tuple[str, ...]:
        return (self.keras_name,) + self.aliases


_CONV = (_Tensor("kernel", "params", "kernel"),)
_BIAS = (_Tensor("bias", "params", "bias"),)
_KINDS: dict[str, tuple[str, tuple[_Tensor, ...]]] = {
    "conv": ("Conv2D", _CONV),
    "conv_bias": ("Conv2D", _CONV + _BIAS),
    "conv_as_dense": ("Conv2D", (_Tensor("kernel", "params", "kernel", "squeeze"),) + _BIAS),
    # Keras 3 calls a DepthwiseConv2D's kernel "kernel", Keras 2 "depthwise_kernel".
    "depthwise": (
        "DepthwiseConv2D",
        (_Tensor("kernel", "params", "kernel", "depthwise", aliases=("depthwise_kernel",)),),
    ),
    "separable": (
        "SeparableConv2D",
        (
            _Tensor("depthwise_kernel", "params", "depthwise/kernel", "depthwise"),
            _Tensor("pointwise_kernel", "params", "pointwise/kernel"),
        ),
    ),
    "bn": (
        "BatchNormalization",
        (
            _Tensor("gamma", "params", "scale"),
            _Tensor("beta", "params", "bias"),
            _Tensor("moving_mean", "batch_stats", "mean"),
            _Tensor("moving_variance", "batch_stats", "var"),
        ),
    ),
    "dense": ("Dense", (_Tensor("kernel", "params", "kernel"),) + _BIAS),
}
#: keras.src.utils.naming.to_snake_case of the classes above: the keys of `.weights.h5`.
_SNAKE = {
    "Conv2D": "conv2d",
    "DepthwiseConv2D": "depthwise_conv2d",
    "SeparableConv2D": "separable_conv2d",
    "BatchNormalization": "batch_normalization",
    "Dense": "dense",
}


def _keras_shape(layout: str, ours: tuple[int, ...], multiplier: int) -> tuple[int, ...]:
    """The Keras shape of a tensor whose shape in our tree is `ours`."""
    if layout == "depthwise":  # ours (kh, kw, 1, C*M) <- Keras (kh, kw, C, M)
        kh, kw, _, cm = ours
        return (kh, kw, cm // multiplier, multiplier)
    if layout == "squeeze":  # ours Dense (in, out) <- Keras 1x1 conv (1, 1, in, out)
        return (1, 1) + tuple(ours)
    return tuple(ours)


def _to_ours(layout: str, value: np.ndarray, ours: tuple[int, ...]) -> np.ndarray:
    # Depthwise output channel c*M + m is Keras's (c, m): a C-order reshape keeps it.
    return np.asarray(value, np.float32).reshape(ours)


@dataclasses.dataclass(frozen=True)
class KerasLayer:
    """One Keras layer with weights: its name (None where Keras names it automatically,
    e.g. Xception's shortcut convs), its kind, and the module path it fills in our tree."""

    name: Optional[str]
    kind: Kind
    target: str
    depth_multiplier: int = 1

    @property
    def class_name(self) -> str:
        return _KINDS[self.kind][0]

    @property
    def tensors(self) -> tuple[_Tensor, ...]:
        return _KINDS[self.kind][1]

    @property
    def label(self) -> str:
        return self.name or f"<unnamed {self.class_name} for {self.target}>"


def _conv_bn(conv: str, bn: str, target: str) -> list[KerasLayer]:
    return [KerasLayer(conv, "conv", f"{target}/conv"), KerasLayer(bn, "bn", f"{target}/bn")]


# ------------------------------------------------------------------------------------------
# The explicit maps, one per family, in Keras's `model.layers` order
# ------------------------------------------------------------------------------------------


def _require(model: nn.Module, **expected: Any) -> None:
    """Refuses ablation settings that keras.applications cannot express."""
    for field, value in expected.items():
        if getattr(model, field) != value:
            raise WeightsConversionError(
                f"keras.applications has no {type(model).__name__} with {field}="
                f"{getattr(model, field)!r} (Keras's is {value!r})",
                first=field,
            )


def _v1_layers(model: MobileNetV1) -> list[KerasLayer]:
    _require(model, conv_type="separable", shallow=False, activation="relu6")
    layers = _conv_bn("conv1", "conv1_bn", "stem")
    for i in range(len(model.block_table())):
        k = i + 1
        layers += [
            KerasLayer(f"conv_dw_{k}", "depthwise", f"blocks_{i}/depthwise/conv", model.depth_multiplier),
            KerasLayer(f"conv_dw_{k}_bn", "bn", f"blocks_{i}/depthwise/bn"),
            *_conv_bn(f"conv_pw_{k}", f"conv_pw_{k}_bn", f"blocks_{i}/pointwise"),
        ]
    return layers + [KerasLayer("conv_preds", "conv_as_dense", "classifier")]


def _v2_layers(model: MobileNetV2) -> list[KerasLayer]:
    _require(model, bottleneck_activation="linear", shortcut="bottleneck", activation="relu6")
    layers = _conv_bn("Conv1", "bn_Conv1", "stem")
    for i in range(len(model.block_table())):
        prefix, bn = ("expanded_conv_", "BN") if i == 0 else (f"block_{i}_", "BN")
        target = f"blocks_{i}"
        if i > 0:  # Keras's first block has no expansion (t = 1)
            layers += _conv_bn(f"{prefix}expand", f"{prefix}expand_{bn}", f"{target}/expand")
        layers += [
            KerasLayer(f"{prefix}depthwise", "depthwise", f"{target}/depthwise/conv"),
            KerasLayer(f"{prefix}depthwise_{bn}", "bn", f"{target}/depthwise/bn"),
            *_conv_bn(f"{prefix}project", f"{prefix}project_{bn}", f"{target}/project"),
        ]
    return layers + _conv_bn("Conv_1", "Conv_1_bn", "last_conv") + [
        KerasLayer("predictions", "dense", "classifier")
    ]


def _v3_layers(model: MobileNetV3) -> list[KerasLayer]:
    default_hswish = 80 if isinstance(model, MobileNetV3Large) else 40
    _require(model, hswish_from=default_hswish, squeeze_excite=True)
    layers = _conv_bn("conv", "conv_bn", "stem")
    for i, block in enumerate(model.block_table()):
        prefix = "expanded_conv_" if i == 0 else f"expanded_conv_{i}_"
        target = f"blocks_{i}"
        if i > 0:  # Keras expands every block but the first (`if block_id:`)
            layers += _conv_bn(f"{prefix}expand", f"{prefix}expand_bn", f"{target}/expand")
        layers += [
            KerasLayer(f"{prefix}depthwise", "depthwise", f"{target}/depthwise/conv"),
            KerasLayer(f"{prefix}depthwise_bn", "bn", f"{target}/depthwise/bn"),
        ]
        if block["se_features"] is not None:
            layers += [
                KerasLayer(f"{prefix}squeeze_excite_conv", "conv_bias", f"{target}/squeeze_excite/reduce"),
                KerasLayer(f"{prefix}squeeze_excite_conv_1", "conv_bias", f"{target}/squeeze_excite/expand"),
            ]
        layers += _conv_bn(f"{prefix}project", f"{prefix}project_bn", f"{target}/project")
    return layers + _conv_bn("conv_1", "conv_1_bn", "last_conv") + [
        KerasLayer("conv_2", "conv_as_dense", "pre_logits"),
        KerasLayer("logits", "conv_as_dense", "classifier"),
    ]


def _xception_layers(model: Xception) -> list[KerasLayer]:
    _require(model, residual=True, separable_activation="none")
    layers = _conv_bn("block1_conv1", "block1_conv1_bn", "stem_0")
    layers += _conv_bn("block1_conv2", "block1_conv2_bn", "stem_1")
    for j, spec in enumerate(MODULES):
        b = j + 2  # Keras numbers the modules block2 ... block13
        for i in range(len(spec.features)):
            name, target = f"block{b}_sepconv{i + 1}", f"blocks_{j}/sepconv_{i}"
            layers += [KerasLayer(name, "separable", target), KerasLayer(f"{name}_bn", "bn", f"{target}/bn")]
        if spec.shortcut == "conv":  # Keras's graph order puts the shortcut after the branch
            layers += [
                KerasLayer(None, "conv", f"blocks_{j}/shortcut/conv"),
                KerasLayer(None, "bn", f"blocks_{j}/shortcut/bn"),
            ]
    for i in range(2):
        name = f"block14_sepconv{i + 1}"
        layers += [KerasLayer(name, "separable", f"exit_{i}"), KerasLayer(f"{name}_bn", "bn", f"exit_{i}/bn")]
    return layers + [KerasLayer("predictions", "dense", "classifier")]


def keras_layers(model: nn.Module) -> list[KerasLayer]:
    """The Keras layers with weights of the keras.applications network equivalent to
    `model` (any width, depth multiplier, minimalistic variant), in `model.layers` order."""
    if isinstance(model, MobileNetV1):
        return _v1_layers(model)
    if isinstance(model, MobileNetV2):
        return _v2_layers(model)
    if isinstance(model, MobileNetV3):
        return _v3_layers(model)
    if isinstance(model, Xception):
        return _xception_layers(model)
    raise TypeError(f"no Keras weight map for {type(model).__name__}")


# ------------------------------------------------------------------------------------------
# Reading Keras models and files
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class StoredLayer:
    """A layer's tensors as a source holds them. `key` is where the file keeps the layer;
    `name` its Keras layer name when the source records it; `weights` is keyed by the
    variable name ("kernel", ...) or, in `.weights.h5`, by position ("0", "1", ...)."""

    key: str
    name: Optional[str]
    class_name: Optional[str]
    weights: dict[str, np.ndarray]


@dataclasses.dataclass
class KerasWeights:
    """Every layer with weights in a Keras source, in the source's order."""

    origin: str
    layers: list[StoredLayer]

    @property
    def names_known(self) -> bool:
        return all(layer.name is not None for layer in self.layers)


def _short_weight_name(name: str) -> str:
    """'conv1/kernel:0' -> 'kernel' (Keras 2 files), 'conv1/kernel' -> 'kernel' (Keras 3)."""
    return name.split("/")[-1].split(":")[0]


def _numeric(value: Any, where: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise WeightsFileError(f"{where}: not a numeric tensor (dtype {array.dtype})")
    return array


def _snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case (class name -> `.weights.h5` key stem)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _read_model(model: Any) -> KerasWeights:
    layers = []
    for layer in model.layers:
        if not layer.weights:
            continue
        weights = {}
        for v in layer.weights:
            value = v.numpy() if hasattr(v, "numpy") else v
            weights[_short_weight_name(v.name)] = _numeric(value, f"{layer.name}/{v.name}")
        layers.append(StoredLayer(layer.name, layer.name, type(layer).__name__, weights))
    return KerasWeights(f"Keras model {model.name!r}", layers)


def _read_h5_v3(f: Any, origin: str, config: Optional[dict]) -> KerasWeights:
    """Keras 3 weights: `layers/<snake class>[_k]/vars/<i>`. With the model's config (from
    a `.keras` archive) keys are mapped back to layer names; without it they stay keys."""
    names: dict[str, tuple[str, str]] = {}
    if config is not None:
        counts: dict[str, int] = {}
        for layer in config.get("config", {}).get("layers", []):
            cls = layer.get("class_name", "")
            stem = _snake_case(cls)
            k = counts.get(stem, 0)
            counts[stem] = k + 1
            names[stem if k == 0 else f"{stem}_{k}"] = (layer.get("config", {}).get("name"), cls)
    snake_to_class = {v: k for k, v in _SNAKE.items()}
    layers = []
    for key in f["layers"]:
        group = f["layers"][key]
        if "vars" not in group or len(group["vars"]) == 0:
            continue
        where = f"layers/{key}/vars"
        weights = {
            i: _numeric(group["vars"][i][()], f"{where}/{i}")
            for i in sorted(group["vars"], key=lambda s: int(s) if s.isdigit() else -1)
        }
        name, cls = names.get(key, (None, snake_to_class.get(re.sub(r"_\d+$", "", key))))
        layers.append(StoredLayer(f"layers/{key}", name, cls, weights))
    # h5py lists groups alphabetically; Keras's order is the class counter within a class.
    return KerasWeights(origin, layers)


def _read_h5_legacy(f: Any, origin: str) -> KerasWeights:
    """Keras 2 weights: one group per layer (in `layer_names` order) with `weight_names`."""
    group = f["model_weights"] if "model_weights" in f else f
    classes: dict[str, str] = {}
    raw = f.attrs.get("model_config")
    if raw is not None:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        classes = {
            layer.get("config", {}).get("name"): layer.get("class_name")
            for layer in config.get("config", {}).get("layers", [])
        }
    layers = []
    for raw_name in group.attrs["layer_names"]:
        name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        g = group[name]
        weights = {}
        for raw_w in g.attrs.get("weight_names", []):
            w = raw_w.decode() if isinstance(raw_w, bytes) else str(raw_w)
            weights[_short_weight_name(w)] = _numeric(g[w][()], f"{name}/{w}")
        if weights:
            layers.append(StoredLayer(name, name, classes.get(name), weights))
    return KerasWeights(origin, layers)


def _read_h5(source: Union[str, io.BytesIO], origin: str, config: Optional[dict] = None) -> KerasWeights:
    import h5py

    with h5py.File(source, "r") as f:
        if "layers" in f and "layer_names" not in f.attrs:
            return _read_h5_v3(f, origin, config)
        if "layer_names" in f.attrs or ("model_weights" in f and "layer_names" in f["model_weights"].attrs):
            return _read_h5_legacy(f, origin)
        raise WeightsFileError(
            f"{origin}: an HDF5 file, but not Keras weights (no 'layers' group and no "
            f"'layer_names' attribute; top-level keys {sorted(f.keys())[:10]})"
        )


def _read_keras_archive(source: Union[str, io.BytesIO], path: str) -> KerasWeights:
    with zipfile.ZipFile(source) as archive:
        members = set(archive.namelist())
        config = json.loads(archive.read("config.json")) if "config.json" in members else None
        if "model.weights.h5" not in members:
            raise WeightsFileError(
                f"{path}: a zip archive without model.weights.h5 (members: {sorted(members)[:10]}); "
                "not a Keras 3 .keras file, or one saved with sharded weights"
            )
        data = archive.read("model.weights.h5")
    return _read_h5(io.BytesIO(data), f"{path} (model.weights.h5)", config)


def read_keras(source: Any) -> KerasWeights:
    """Every layer with weights of a Keras model object or a `.weights.h5`, legacy `.h5` or
    `.keras` file (detected from the content). Raises WeightsFileError for files that
    cannot be read: missing, truncated, corrupt or of another format."""
    if hasattr(source, "layers") and hasattr(source, "get_layer"):
        return _read_model(source)
    path = os.fspath(source)
    file = paths.resolve(path, "--keras")
    if not paths.exists(file, "--keras") or not file.is_file():
        raise WeightsFileError(f"{path}: no such file")
    try:
        # Files in a bucket are read whole (weights files are tens of MB); local ones in place.
        data: Union[str, io.BytesIO] = path if paths.is_local(path) else io.BytesIO(file.read_bytes())
        if zipfile.is_zipfile(data):
            return _read_keras_archive(data, path)
        with file.open("rb") as f:
            magic = f.read(8)
        if magic != b"\x89HDF\r\n\x1a\n":
            raise WeightsFileError(
                f"{path}: neither HDF5 (.h5, .weights.h5) nor a zip archive (.keras); "
                f"first bytes {magic!r}"
            )
        return _read_h5(data, path)
    except WeightsFileError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise WeightsFileError(
            f"{path}: cannot read Keras weights ({type(e).__name__}: {e}); the file is "
            "truncated or corrupt: download or save it again"
        ) from e


# ------------------------------------------------------------------------------------------
# Matching and conversion
# ------------------------------------------------------------------------------------------


def _match(spec: list[KerasLayer], stored: KerasWeights) -> list[tuple[Optional[StoredLayer], Optional[str]]]:
    """For each spec layer: its stored layer (None where absent) and, for sources keyed by
    class (`.weights.h5`), the key Keras gives it (`layers/conv2d_3`)."""
    if stored.names_known:
        by_name = {layer.name: layer for layer in stored.layers}
        named = {s.name for s in spec if s.name is not None}
        # Automatically named layers (Xception's shortcuts) are taken in order, per class.
        spare: dict[str, list[StoredLayer]] = {}
        for layer in stored.layers:
            if layer.name in named:
                continue
            for cls, stem in _SNAKE.items():
                if layer.class_name == cls or (
                    layer.class_name is None and re.fullmatch(rf"{stem}(_\d+)?", layer.name)
                ):
                    spare.setdefault(cls, []).append(layer)
        return [
            (by_name.get(s.name), None) if s.name is not None
            else ((spare[s.class_name].pop(0) if spare.get(s.class_name) else None), None)
            for s in spec
        ]
    by_key = {layer.key: layer for layer in stored.layers}
    counts: dict[str, int] = {}
    matched = []
    for s in spec:
        stem = _SNAKE[s.class_name]
        k = counts.get(stem, 0)
        counts[stem] = k + 1
        key = f"layers/{stem}" if k == 0 else f"layers/{stem}_{k}"
        matched.append((by_key.get(key), key))
    return matched


def _expected_tree(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """'params/blocks_0/depthwise/conv/kernel' -> shape, for every variable of `model`."""
    x = jax.ShapeDtypeStruct((1, model.min_resolution, model.min_resolution, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init({"params": jax.random.key(0)}, x, train=False), x)
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    return {"/".join(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def _family(model: nn.Module) -> str:
    for cls, name in ((MobileNetV1, "mobilenet_v1"), (MobileNetV2, "mobilenet_v2"),
                      (MobileNetV3Large, "mobilenet_v3_large"),
                      (MobileNetV3Small, "mobilenet_v3_small"), (Xception, "xception")):
        if isinstance(model, cls):
            return name
    return type(model).__name__


def _guess_family(names: Sequence[str]) -> Optional[str]:
    marks = {
        "mobilenet_v1": "conv_dw_1",
        "mobilenet_v2": "block_1_expand",
        "mobilenet_v3_large": "expanded_conv_14_project",
        "mobilenet_v3_small": "expanded_conv_10_project",
        "xception": "block14_sepconv1",
    }
    found = set(names)
    for family, mark in marks.items():
        if mark in found and not (family == "mobilenet_v3_small" and marks["mobilenet_v3_large"] in found):
            return family
    return None


def convert_keras(source: Any, model: nn.Module) -> dict[str, Any]:
    """`{"params": ..., "batch_stats": ...}` (float32 numpy) of `model` from a Keras model
    object or file. `model` is one of our networks built with the matching width/variant
    (and `keras_model_overrides` for identical outputs). Raises WeightsFileError for an
    unreadable file and WeightsConversionError, naming the first offending tensor, when
    any tensor is missing, unexpected or mis-shaped; never returns a partial tree."""
    spec = keras_layers(model)
    stored = read_keras(source)
    expected = _expected_tree(model)
    matched = _match(spec, stored)

    flat: dict[str, np.ndarray] = {}
    problems: list[str] = []  # in spec order; problems[0] names the first offending tensor
    missing, mismatched, uncovered, unexpected = [], [], [], []
    used: set[int] = set()
    for layer, (found, key) in zip(spec, matched):
        if found is not None:
            used.add(id(found))
        positional = found is not None and all(k.isdigit() for k in found.weights)
        names_in_file = list(found.weights) if found is not None else []
        for i, t in enumerate(layer.tensors):
            ours = f"{t.collection}/{layer.target}/{t.path}"
            tensor = f"{layer.label}/{t.keras_name}"
            stored_key = None
            if found is not None:
                stored_key = str(i) if positional else next(
                    (n for n in t.names if n in found.weights), t.keras_name
                )
            where = (
                f" (stored as {found.key}/vars/{i})" if positional
                else f" (expected at {key}/vars/{i})" if found is None and key else ""
            )
            if ours not in expected:
                uncovered.append(f"{tensor}: our model has no {ours}")
                problems.append(uncovered[-1])
                continue
            if found is None or stored_key not in found.weights:
                what = "layer" if found is None else "tensor"
                missing.append(f"{tensor} (for our {ours})")
                problems.append(f"missing Keras {what} for tensor {tensor}{where} (for our {ours})")
                continue
            names_in_file.remove(stored_key)
            value = found.weights[stored_key]
            want = _keras_shape(t.layout, expected[ours], layer.depth_multiplier)
            if tuple(value.shape) != want:
                mismatched.append(f"{tensor}{where}: file {tuple(value.shape)}, expected {want}")
                problems.append(f"mis-shaped tensor {mismatched[-1]} (for our {ours})")
                continue
            flat[ours] = _to_ours(t.layout, value, expected[ours])
        for extra in names_in_file:
            unexpected.append(f"{found.key}/{extra}")
    for layer in stored.layers:
        if id(layer) not in used:
            unexpected += [f"{layer.key}/{w}" for w in layer.weights]
    targeted = {f"{t.collection}/{s.target}/{t.path}" for s in spec for t in s.tensors}
    no_source = [path for path in expected if path not in targeted]
    uncovered += [f"our {p} has no Keras layer" for p in no_source]
    problems += [f"our {p} has no Keras layer" for p in no_source]
    problems += [f"unexpected tensor {u}" for u in unexpected]
    if problems:
        guess = _guess_family([layer.name for layer in stored.layers if layer.name])
        ours_name = type(model).__name__
        hint = f" The file looks like {guess}." if guess and guess != _family(model) else ""
        lists = "; ".join(
            f"{label} ({len(items)}): {', '.join(items[:8])}{' ...' if len(items) > 8 else ''}"
            for label, items in (("missing", missing), ("mis-shaped", mismatched),
                                 ("unexpected", unexpected), ("not in one of the two", uncovered))
            if items
        )
        raise WeightsConversionError(
            f"cannot convert {stored.origin} into {ours_name}(width={model.width}): "
            f"first problem: {problems[0]}.{hint} All problems: {lists}",
            first=problems[0], missing=missing, unexpected=unexpected,
            mismatched=mismatched, uncovered=uncovered,
        )
    variables = traverse_util.unflatten_dict(flat, sep="/")
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
