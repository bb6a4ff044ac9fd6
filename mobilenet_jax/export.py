"""Deployment export: a trained workdir (or a fresh network, for timing) to what a phone or a
server runs, each file verified after it is written:

    python -m mobilenet_jax.export --workdir DIR --out OUT [--formats all] [--batch 1]
        [--image-size S] [--representative-count 200] [--step N] [--best]
    python -m mobilenet_jax.export --model mobilenet_v3_small [--width 0.75] [--num-classes 1000]
        [--model-kwargs '{"minimalistic": true}'] --out OUT ...

Formats (`--formats`, default all):
- `float32`, `float16` (float16 weights, float32 compute), `dynamic_range` (int8 weights,
  activations quantized on the fly) and `int8` (full integer: int8 weights and activations,
  int8 input and output, calibrated on `--representative-count` images from the config's data
  set): `.tflite` files of TFLite builtin ops only, the papers' deployment (V2 Sec. 6.1, V3
  Sec. 6.1: TFLite, one thread, batch 1).
- `stablehlo`: `jax.export`'s serialized module for XLA on cpu, cuda, rocm and tpu, each
  platform with its own depthwise form.
- `saved_model`: a TensorFlow serving SavedModel (signature `serving_default`, weights as
  variables) for CPU and CUDA.
- `onnx`, `onnx_int8`: ONNX (opset 17) of the float32 and the int8 TFLite graphs, through
  tf2onnx's TFLite reader (tf2onnx cannot read a jax2tf SavedModel's XlaCallModule), run by
  onnxruntime: the runtime most non-Android deployments use. int8 is QuantizeLinear /
  DequantizeLinear around each op; the file's metadata keeps the TFLite signature (output
  names, int8 scales and zero points).

Each format is a `Format` record (file name, writer, loader, tolerance, op histogram) in one
registry, `FORMATS`; a new one joins with `register_format`.

The TFLite path is jax2tf (native serialization, with_gradient=False) -> a tf.function with a
fixed input signature -> `tf.lite.TFLiteConverter.from_concrete_functions`. Three choices
make the graph a phone's: the depthwise convolution is forced to its grouped form (it lowers to
DEPTHWISE_CONV_2D; the CPU's shifted form would become hundreds of MUL/ADD/SLICE ops, 6.5x
slower), the batch is fixed (a polymorphic batch leaves BatchNorm unfolded, ~40x slower) and
the computation is float32 (bfloat16 does not legalize to TFLite builtins). SSDLite exports
its box codes and class logits ({"box_codes", "class_logits"}); anchor decoding and NMS stay
on the host (`mobilenet_jax.detection.postprocess`), since TFLite's detection postprocess is a
custom op, not a builtin.

Each file is written under a temporary name, loaded (LiteRT's Interpreter, `jax.export`'s
deserializer, `tf.saved_model.load`), run once on representative images, compared with the
JAX model, and only then renamed into place; `OUT/export.json` records every file's size, op
histogram and agreement. A mistake in the request (unknown model or format, a workdir without
a checkpoint, a batch or resolution the network cannot take, an output path under a file or
not writable, a bfloat16 request) is one `error:` line, and nothing is left behind.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax import cli
from mobilenet_jax.errors import UsageError, UserError

TFLITE_FORMATS = ("float32", "float16", "dynamic_range", "int8")
#: XLA platforms the StableHLO artifact and the SavedModel are lowered for.
STABLEHLO_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
SAVED_MODEL_PLATFORMS = ("cpu", "cuda")
#: The ONNX opset of the `onnx` formats (onnxruntime 1.32 runs up to 23; 17 has every op used).
ONNX_OPSET = 17


class ExportError(UserError, ValueError):
    """A request the exporter cannot serve (see the module doc)."""


@dataclasses.dataclass(frozen=True)
class Exportable:
    """A network in its deployment form with its variables: what every format is made from."""

    model: Any  # a registered flax Network, float32, depthwise_impl='grouped'
    variables: dict
    batch: int
    image_size: int
    name: str
    config: Any  # the trainer config whose data set gives the representative images
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.image_size, self.image_size, 3)


Runner = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format, the seam every format joins through (`register_format`): its file
    name, how it is written from an Exportable (`write(exportable, path, representative,
    written)`: the representative images are given when `calibrated`; `written` maps the formats
    this export already wrote to their files, for a format made from another), how a written file is loaded
    into a runner (images -> the model's named float outputs), the tolerance its outputs must
    meet against JAX (largest |file - JAX| / (1 + max |JAX|); None for a quantized format,
    judged by its top-1 agreement), its op histogram where it has one (raising on ops a
    deployment runtime lacks), and whether it is a deployment file (`deployed`: scored by
    `--score-split`, timed by benchmarks.latency)."""

    name: str
    file_name: str
    write: Callable[[Exportable, Path, Optional[np.ndarray], dict[str, Path]], None]
    load: Callable[[Path], Runner]
    tolerance: Optional[float] = None
    ops: Optional[Callable[[Path], dict[str, int]]] = None
    calibrated: bool = False
    deployed: bool = False


#: name -> Format, in the order `--formats all` writes them.
FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    if fmt.name in FORMATS:
        raise ValueError(f"export format {fmt.name!r} is already registered")
    FORMATS[fmt.name] = fmt
    return fmt


# --------------------------------------------------------------------------------------------
# The network in its deployment form
# --------------------------------------------------------------------------------------------


def deployment_model(model: Any, depthwise_impl: str = "grouped") -> Any:
    """`model` as a phone runs it: grouped depthwise convolutions (TFLite DEPTHWISE_CONV_2D),
    float32, no cross-replica BatchNorm."""
    return model.clone(depthwise_impl=depthwise_impl, dtype=jnp.float32, bn_axis_name=None)


def predict_fn(model: Any) -> Callable[[dict, jax.Array], dict[str, jax.Array]]:
    """(variables, images) -> named outputs: {"logits"} for a classifier, {"box_codes",
    "class_logits"} for SSDLite (its raw head outputs)."""

    def predict(variables: dict, images: jax.Array) -> dict[str, jax.Array]:
        out = model.apply(variables, images, train=False)
        return dict(out) if isinstance(out, dict) else {"logits": out}

    return predict


def check_request(model: Any, batch: int, image_size: int, dtype: str) -> None:
    """Rejects a batch, resolution or dtype the export cannot take, before anything is built."""
    if dtype != "float32":
        raise ExportError(
            f"--dtype {dtype}: export is float32 only (bfloat16/float16 compute does not legalize to "
            "TFLite builtins); for smaller or faster files use --formats float16, dynamic_range or int8")
    if batch < 1:
        raise ExportError(f"--batch must be >= 1 (a fixed batch), got {batch}")
    if image_size < model.min_resolution:
        raise ExportError(f"{type(model).__name__} needs inputs of at least {model.min_resolution}x"
                          f"{model.min_resolution}; --image-size {image_size} is too small")
    if image_size > 4096:
        raise ExportError(f"--image-size {image_size} is larger than any deployment input (4096)")


def calibrated_init(model: Any, key: jax.Array, images: np.ndarray, min_variance: float = 0.0) -> dict:
    """`model.init` with the BatchNorm running statistics set to the training-mode statistics
    of `images` (momentum 0), variances floored at `min_variance`; one compiled program. A
    fresh network's activations then have the scale of a trained one's, which the int8
    calibration and the latency of saturating ops depend on."""
    probe = model.clone(bn_momentum=0.0, dropout_rate=0.0)

    def init(key, images):
        variables = model.init(key, images, train=False)
        _, updates = probe.apply(variables, images, train=True, mutable=["batch_stats"])
        stats = jax.tree_util.tree_map_with_path(
            lambda path, a: jnp.maximum(a, min_variance) if jax.tree_util.keystr(path).endswith("['var']") else a,
            updates["batch_stats"])
        return {**variables, "batch_stats": stats}

    return jax.jit(init)(key, jnp.asarray(images))


def fresh(model_name: str, *, out_name: Optional[str] = None, batch: int = 1, image_size: Optional[int] = None,
          dtype: str = "float32", config: Any = None, calibration_images: int = 16, min_variance: float = 0.1,
          seed: int = 0, **model_kwargs: Any) -> Exportable:
    """A freshly initialised network (random weights, BatchNorm statistics calibrated on the
    config's data set, default the embedded shapes; `calibration_images=0` keeps the initial
    statistics): for timing, where weights do not matter. The variances are floored at
    `min_variance`: calibrated exactly, a random network is chaotic (float32 rounding grows
    ~1e3-fold over SSDLite's depth, so two exact float32 forms of it differ by 3e-4); with
    every layer's gain below 1/sqrt(0.1) its float files can be checked to 1e-4."""
    from mobilenet_jax import create_model

    model = deployment_model(create_model(model_name, **model_kwargs))
    size = image_size or model.default_resolution
    check_request(model, batch, size, dtype)
    config = config if config is not None else _default_data_config()
    shape = (batch, size, size, 3)
    key = jax.random.key(seed, impl="unsafe_rbg")  # compiles faster than threefry
    if calibration_images > 0:
        variables = calibrated_init(model, key, representative_images(config, calibration_images, size), min_variance)
    else:
        variables = jax.jit(lambda k: model.init(k, jnp.zeros(shape, jnp.float32), train=False))(key)
    return Exportable(model, variables, batch, size, out_name or model_name, config, f"fresh {model_name}")


def from_workdir(workdir: str, *, batch: int = 1, image_size: Optional[int] = None, dtype: str = "float32",
                 step: Optional[int] = None, best: bool = False) -> Exportable:
    """A trainer or converter workdir's checkpoint (EMA weights when it has them)."""
    from mobilenet_jax.train.checkpoint import load_workdir_config, restore_variables
    from mobilenet_jax.train.loop import build_model

    config = load_workdir_config(workdir)
    trained_size = config.image_size
    size = image_size or trained_size
    num_classes = config.num_classes if config.num_classes > 0 else _data_set_classes(config)
    config.dtype = "float32"
    model = deployment_model(build_model(config, num_classes))
    check_request(model, batch, size, dtype)
    step, variables = restore_variables(workdir, model, trained_size, step=step, best=best)
    return Exportable(model, variables, batch, size, config.model, config, f"{workdir} step {step}")


def _default_data_config():
    from mobilenet_jax.train.config import default_config

    config = default_config()
    config.dataset = "embedded"
    return config


def _data_set_classes(config) -> int:
    from mobilenet_jax.data import embedded_detection_num_classes
    from mobilenet_jax.data.embedded import NUM_CLASSES

    if config.dataset == "embedded":
        return NUM_CLASSES
    if config.dataset == "embedded_detection":
        return embedded_detection_num_classes(config)
    from mobilenet_jax.data import build_dataset, host_layout

    return build_dataset(config, host_layout(1)).info.num_classes


def representative_images(config, count: int, image_size: int) -> np.ndarray:
    """`count` training images [count, S, S, 3] in [-1, 1] of the config's data set: the int8
    calibration set (and a fresh network's BatchNorm calibration)."""
    if count < 1:
        raise ExportError(f"--representative-count must be >= 1, got {count}")
    if config.dataset == "embedded":
        from mobilenet_jax.data import embedded

        return embedded.make_split("train", count, image_size, config.seed)[0]
    config = config.copy_and_resolve_references()
    config.image_size = image_size
    if config.dataset == "embedded_detection":
        from mobilenet_jax.data import embedded_detection_split

        config.embedded_num_train = count
        return embedded_detection_split(config, "train")["image"]
    from mobilenet_jax.data import build_dataset, host_layout

    config.batch_size = config.eval_batch_size = min(count, 64)
    images, total = [], 0
    for batch in build_dataset(config, host_layout(1)).train_batches(0):
        image = np.asarray(batch["image"]).reshape((-1, image_size, image_size, 3))
        images.append(image)
        total += len(image)
        if total >= count:
            break
    return np.concatenate(images)[:count].astype(np.float32)


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def tf_function(exportable: Exportable, platforms: Sequence[str] = ("cpu",), as_variables: bool = False):
    """(tf.function with a fixed signature `images: float32[B, S, S, 3]`, tf.Module holding it).

    jax2tf native serialization, with_gradient=False; weights as constants (what the TFLite
    converter folds BatchNorm into) or, `as_variables`, as tf.Variables (a SavedModel)."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    predict = jax2tf.convert(predict_fn(exportable.model), with_gradient=False,
                             native_serialization_platforms=tuple(platforms))
    module = tf.Module()
    if as_variables:
        module.variables_tree = jax.tree_util.tree_map(lambda a: tf.Variable(np.asarray(a), trainable=False),
                                                       exportable.variables)
        weights = module.variables_tree
    else:
        weights = jax.tree_util.tree_map(np.asarray, exportable.variables)

    def serve(images):
        return predict(weights, images)

    module.serve = tf.function(serve, input_signature=[tf.TensorSpec(exportable.input_shape, tf.float32, name="images")],
                               autograph=False)
    return module.serve, module


def convert_tflite(exportable: Exportable, fmt: str, representative: Optional[np.ndarray] = None) -> bytes:
    """The `.tflite` flatbuffer of one of TFLITE_FORMATS (builtin ops only, else an error)."""
    import tensorflow as tf

    serve, module = tf_function(exportable)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if fmt == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "int8":
        if representative is None:
            raise ValueError("int8 needs representative images")
        batch = exportable.batch

        def samples():
            for i in range(0, len(representative) - batch + 1, batch):
                yield [representative[i:i + batch]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif fmt != "float32":
        raise ValueError(f"not a TFLite format: {fmt}")
    return converter.convert()


def stablehlo_bytes(exportable: Exportable, platforms: Sequence[str] = STABLEHLO_PLATFORMS) -> bytes:
    """`jax.export`'s serialized module of the network for XLA, each platform with the
    depthwise form it runs fastest ('auto'), weights as constants."""
    model = deployment_model(exportable.model, depthwise_impl="auto")
    predict = predict_fn(model)
    variables = exportable.variables
    exported = jax.export.export(jax.jit(lambda images: predict(variables, images)), platforms=tuple(platforms))(
        jax.ShapeDtypeStruct(exportable.input_shape, jnp.float32))
    return bytes(exported.serialize())


def write_saved_model(exportable: Exportable, directory: Path) -> None:
    import tensorflow as tf

    model = deployment_model(exportable.model, depthwise_impl="auto")
    serve, module = tf_function(dataclasses.replace(exportable, model=model), SAVED_MODEL_PLATFORMS,
                                as_variables=True)
    tf.saved_model.save(module, str(directory), signatures={"serving_default": serve})


# --------------------------------------------------------------------------------------------
# Running and verifying what was written
# --------------------------------------------------------------------------------------------


def tflite_interpreter(model: bytes | str | Path, num_threads: int = 1, delegate: bool = True):
    """LiteRT's Interpreter (ai-edge-litert), XNNPACK unless `delegate` is False."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    interpreter = Interpreter(**source, num_threads=num_threads, experimental_op_resolver_type=kind)
    interpreter.allocate_tensors()
    return interpreter


def op_histogram(model: bytes | str | Path) -> dict[str, int]:
    """{TFLite op name: count} of the model's graph (before any delegate takes nodes)."""
    ops = tflite_interpreter(model, delegate=False)._get_ops_details()
    return dict(collections.Counter(op["op_name"] for op in ops).most_common())


def quantize(images: np.ndarray, dtype: Any, scale: float, zero: int) -> np.ndarray:
    """Float images as an integer input tensor of the given scale and zero point."""
    info = np.iinfo(dtype)
    return np.clip(np.round(images / scale + zero), info.min, info.max).astype(dtype)


def dequantize(value: np.ndarray, scale: float, zero: int) -> np.ndarray:
    return ((np.asarray(value).astype(np.float32) - zero) * scale).astype(np.float32)


def run_tflite(interpreter, images: np.ndarray) -> dict[str, np.ndarray]:
    """Named float outputs of the `serving_default` signature; int8 inputs and outputs are
    quantized and dequantized with the file's own scales."""
    runner = interpreter.get_signature_runner()
    (name, detail), = runner.get_input_details().items()
    x = images if detail["dtype"] == np.float32 else quantize(images, detail["dtype"], *detail["quantization"])
    outputs = runner(**{name: x})
    result = {}
    for key, value in outputs.items():
        out = runner.get_output_details()[key]
        result[key] = (np.asarray(value, np.float32) if out["dtype"] == np.float32
                       else dequantize(value, *out["quantization"]))
    return result


def builtin_tflite_ops(path: Path) -> dict[str, int]:
    """The op histogram of a .tflite file, which must hold TFLite builtin ops only."""
    histogram = op_histogram(path)
    flex = [op for op in histogram if op.startswith("Flex") or op == "CUSTOM"]
    if flex:
        raise RuntimeError(f"{path.name} has non-builtin ops {flex}")
    return histogram


def tflite_signature(flatbuffer: bytes) -> dict[str, Any]:
    """The `serving_default` signature of a .tflite file as the tensors a converted graph keeps:
    {"input": {name, key, dtype, scale, zero}, "outputs": [{name, key, dtype, scale, zero}, ...]}."""
    interpreter = tflite_interpreter(flatbuffer, delegate=False)
    signature = interpreter._get_full_signature_list()["serving_default"]
    tensors = {d["index"]: d for d in interpreter.get_input_details() + interpreter.get_output_details()}

    def tensor(key: str, index: int) -> dict[str, Any]:
        d = tensors[index]
        scale, zero = d["quantization"]
        return {"name": d["name"], "key": key, "dtype": np.dtype(d["dtype"]).name, "scale": float(scale),
                "zero": int(zero)}

    (key, index), = signature["inputs"].items()
    return {"input": tensor(key, index), "outputs": [tensor(k, i) for k, i in sorted(signature["outputs"].items())]}


#: The ONNX file's metadata key holding its `tflite_signature` (names, keys, quantization).
ONNX_SIGNATURE_KEY = "mobilenet_jax.signature"


def tflite_to_onnx(flatbuffer: bytes) -> bytes:
    """The ONNX model (opset ONNX_OPSET) of a .tflite graph through tf2onnx's TFLite reader (a
    jax2tf graph's XlaCallModule is not readable by tf2onnx; its TFLite graph is), with the
    TFLite signature in the metadata (`ONNX_SIGNATURE_KEY`)."""
    import onnx
    import tf2onnx

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # tf2onnx reads the graph with tf.lite.Interpreter, whose deprecation notice is not ours
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
        tflite_path = Path(tmp) / "model.tflite"
        tflite_path.write_bytes(flatbuffer)
        proto, _ = tf2onnx.convert.from_tflite(str(tflite_path), opset=ONNX_OPSET)
    unconverted = sorted({node.op_type[4:] for node in proto.graph.node if node.op_type.startswith("TFL_")})
    if unconverted:  # tf2onnx leaves a TFLite op it has no ONNX form for as an unrunnable node
        raise ExportError(f"tf2onnx {tf2onnx.__version__} has no ONNX form for the TFLite op(s) {unconverted} of this "
                          "network; export it as TFLite instead")
    onnx.helper.set_model_props(proto, {ONNX_SIGNATURE_KEY: json.dumps(tflite_signature(flatbuffer))})
    return proto.SerializeToString()


def write_onnx(exportable: Exportable, path: Path, representative: Optional[np.ndarray], written: dict[str, Path],
               source: str) -> None:
    """ONNX of the TFLite graph of format `source` (float32, or int8 as QuantizeLinear /
    DequantizeLinear pairs around each op): the file this export already wrote, else converted."""
    if source in written:
        flatbuffer = written[source].read_bytes()
    else:
        flatbuffer = convert_tflite(exportable, source, representative)
    path.write_bytes(tflite_to_onnx(flatbuffer))


def onnx_session(path: str | Path, num_threads: int = 1):
    """An onnxruntime CPU session, `num_threads` intra-op threads, sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_signature(session) -> dict[str, Any]:
    return json.loads(session.get_modelmeta().custom_metadata_map[ONNX_SIGNATURE_KEY])


def load_onnx(path: Path) -> Runner:
    session = onnx_session(path)
    signature = onnx_signature(session)
    inp, outs = signature["input"], signature["outputs"]

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        x = images if inp["dtype"] == "float32" else quantize(images, np.dtype(inp["dtype"]), inp["scale"], inp["zero"])
        values = session.run([o["name"] for o in outs], {inp["name"]: x.astype(np.dtype(inp["dtype"]))})
        return {o["key"]: np.asarray(v, np.float32) if o["dtype"] == "float32" else dequantize(v, o["scale"], o["zero"])
                for o, v in zip(outs, values)}

    return run


def onnx_ops(path: Path) -> dict[str, int]:
    import onnx

    graph = onnx.load(str(path)).graph
    return dict(collections.Counter(node.op_type for node in graph.node).most_common())


def load_stablehlo(path: Path) -> Runner:
    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    return lambda images: {k: np.asarray(v) for k, v in exported.call(jnp.asarray(images)).items()}


def load_saved_model(path: Path) -> Runner:
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    return lambda images: {k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}


def _tflite_format(name: str, tolerance: Optional[float]) -> Format:
    return Format(name, f"model_{name}.tflite",
                  write=lambda e, path, rep, written: path.write_bytes(convert_tflite(e, name, rep)),
                  load=lambda path: functools.partial(run_tflite, tflite_interpreter(path)),
                  tolerance=tolerance, ops=builtin_tflite_ops, calibrated=name == "int8", deployed=True)


register_format(_tflite_format("float32", 1e-3))
register_format(_tflite_format("float16", 5e-2))
register_format(_tflite_format("dynamic_range", None))
register_format(_tflite_format("int8", None))
register_format(Format("stablehlo", "model.stablehlo",
                       lambda e, path, rep, written: path.write_bytes(stablehlo_bytes(e)), load_stablehlo, tolerance=1e-5))
register_format(Format("saved_model", "saved_model", lambda e, path, rep, written: write_saved_model(e, path),
                       load_saved_model, tolerance=1e-4))
register_format(Format("onnx", "model.onnx", functools.partial(write_onnx, source="float32"), load_onnx,
                       tolerance=1e-3, ops=onnx_ops, deployed=True))
register_format(Format("onnx_int8", "model_int8.onnx", functools.partial(write_onnx, source="int8"), load_onnx,
                       ops=onnx_ops, calibrated=True, deployed=True))


def jax_outputs(exportable: Exportable, images: np.ndarray) -> dict[str, np.ndarray]:
    predict = jax.jit(predict_fn(exportable.model))
    return {k: np.asarray(v) for k, v in predict(exportable.variables, jnp.asarray(images)).items()}


def agreement(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, float]:
    """Max |output - reference|, the same relative to the reference's scale, and the share of
    rows whose argmax agrees (the classifier's top-1; per anchor for the detector's classes)."""
    if set(outputs) != set(reference):
        raise RuntimeError(f"exported outputs {sorted(outputs)} are not the model's {sorted(reference)}")
    diff = max(float(np.max(np.abs(outputs[k] - reference[k]))) for k in reference)
    scale = max(float(np.max(np.abs(reference[k]))) for k in reference)
    key = "logits" if "logits" in reference else "class_logits"
    top1 = float(np.mean(np.argmax(outputs[key], -1) == np.argmax(reference[key], -1)))
    return {"max_abs_diff": diff, "relative_diff": diff / (1.0 + scale), "top1_agreement": top1}


def verify(fmt: str, path: Path, exportable: Exportable, images: np.ndarray,
           reference: dict[str, np.ndarray]) -> dict[str, Any]:
    """Loads the file at `path`, runs it once on `images` and compares with JAX's outputs;
    raises if a float format disagrees beyond its tolerance or any output is not finite."""
    spec = FORMATS[fmt]
    info: dict[str, Any] = {}
    if spec.ops is not None:
        info["ops"] = spec.ops(path)
    outputs = spec.load(path)(images)
    if not all(np.all(np.isfinite(v)) for v in outputs.values()):
        raise RuntimeError(f"{fmt} file {path} gives non-finite outputs")
    info.update(agreement(outputs, reference))
    if spec.tolerance is not None and info["relative_diff"] > spec.tolerance:
        raise RuntimeError(f"{fmt} file {path} disagrees with the JAX model: relative diff "
                           f"{info['relative_diff']:.2e} > {spec.tolerance:.0e}")
    return info


def check_scorable(exportable: Exportable) -> None:
    """An ExportError unless `exportable` is a classifier (what `score_split` measures)."""
    from mobilenet_jax.models import model_task

    task = model_task(exportable.config.model)
    if task != "classification":
        raise ExportError(f"--score-split scores a classifier's top-1; {exportable.config.model} is a {task} model")


def score_split(exportable: Exportable, files: dict[str, Path], split: str,
                limit: int = -1) -> dict[str, Any]:
    """Top-1 accuracy of the JAX model and of each deployment file in `files` ({format: path})
    over the real images of `split` of the config's data set (padding masked out; the first
    `limit` images when limit > 0), and each file's top-1 agreement with the JAX model there:
    V3 Table 4's float vs quantized accuracy, measured on the deployed files. Classifiers only."""
    from mobilenet_jax.data import build_dataset, host_layout

    check_scorable(exportable)
    config = exportable.config.copy_and_resolve_references()
    config.eval_split, config.eval_batch_size, config.num_eval_steps = split, 64, -1
    config.image_size = exportable.image_size
    predict = jax.jit(predict_fn(exportable.model))
    runners = {fmt: FORMATS[fmt].load(path) for fmt, path in files.items()}
    labels, predictions = [], collections.defaultdict(list)
    for batch in build_dataset(config, host_layout(1)).eval_batches():
        keep = np.asarray(batch["mask"]).reshape(-1).astype(bool)
        images = np.asarray(batch["image"], np.float32).reshape((-1,) + exportable.input_shape[1:])[keep]
        labels.append(np.asarray(batch["label"]).reshape(-1)[keep])
        for start in range(0, len(images), exportable.batch):  # the files take a fixed batch
            chunk = images[start:start + exportable.batch]
            padded = np.resize(chunk, exportable.input_shape).astype(np.float32)
            outputs = {"jax": predict(exportable.variables, jnp.asarray(padded))["logits"]}
            outputs.update({fmt: run(padded)["logits"] for fmt, run in runners.items()})
            for key, logits in outputs.items():
                predictions[key].append(np.argmax(np.asarray(logits), -1)[:len(chunk)])
        if 0 < limit <= sum(map(len, labels)):
            break
    n = sum(map(len, labels)) if limit <= 0 else min(limit, sum(map(len, labels)))
    truth = np.concatenate(labels)[:n]
    top1 = {key: np.concatenate(p)[:n] for key, p in predictions.items()}
    return {"split": split, "images": n, "jax_accuracy": float(np.mean(top1["jax"] == truth)),
            "files": {fmt: {"accuracy": float(np.mean(top1[fmt] == truth)),
                            "top1_agreement": float(np.mean(top1[fmt] == top1["jax"]))} for fmt in files}}


# --------------------------------------------------------------------------------------------
# Writing: a temporary name, verified, then renamed into place
# --------------------------------------------------------------------------------------------


def output_directory(out: str, create: bool = True) -> Path:
    """`out` as a writable local directory (created if missing and `create`); an error line
    otherwise."""
    if "://" in str(out):
        raise ExportError(f"--out {out}: export writes local files only")
    path = Path(out).expanduser().absolute()
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            raise ExportError(f"--out {out}: {parent} is a file, not a directory")
        if parent.exists():
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ExportError(f"--out {out}: {parent} is not writable")
            break
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"--out {out}: cannot create the directory ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ExportError(f"--out {out}: the directory is not writable")
    return path


def _replace(temporary: Path, final: Path) -> None:
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    os.replace(temporary, final)


def export(exportable: Exportable, out: str, formats: Sequence[str] = tuple(FORMATS), representative_count: int = 200,
           log: Callable[[str], None] = print, score: str = "", score_limit: int = -1) -> dict[str, Any]:
    """Writes `formats` of `exportable` into directory `out` (see the module doc); returns the
    manifest also written to `out/export.json`. `score`: a split of the config's data set on
    which the deployment files' top-1 accuracy is measured beside the JAX model's (`score_split`)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown format(s) {unknown}; known formats: {list(FORMATS)} or 'all'")
    output_directory(out, create=False)  # before the work: a bad path fails at once
    if score:
        check_scorable(exportable)
    size = exportable.image_size
    calibrated = any(FORMATS[f].calibrated for f in formats)
    count = max(representative_count, exportable.batch) if calibrated else exportable.batch
    representative = representative_images(exportable.config, count, size)
    probe = representative[:exportable.batch]
    if len(probe) < exportable.batch:
        probe = np.resize(representative, exportable.input_shape).astype(np.float32)
    reference = jax_outputs(exportable, probe)
    manifest: dict[str, Any] = {
        "source": exportable.source, "model": exportable.name, "model_class": type(exportable.model).__name__,
        "input_shape": list(exportable.input_shape), "outputs": {k: list(v.shape) for k, v in reference.items()},
        "representative_images": count if calibrated else 0, "files": {},
    }
    directory = output_directory(out)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=directory))
    try:
        for fmt in formats:
            spec = FORMATS[fmt]
            temporary = staging / spec.file_name
            written = {f: Path(info["path"]) for f, info in manifest["files"].items()}
            spec.write(exportable, temporary, representative if spec.calibrated else None, written)
            info = verify(fmt, temporary, exportable, probe, reference)
            info["bytes"] = _size(temporary)
            final = directory / spec.file_name
            _replace(temporary, final)
            manifest["files"][fmt] = {"path": str(final), **info}
            log(describe(fmt, final, info))
        deployed = {f: Path(manifest["files"][f]["path"]) for f in formats if FORMATS[f].deployed}
        if score and deployed:
            scored = score_split(exportable, deployed, score, score_limit)
            manifest["scored"] = scored
            log(f"top-1 on {scored['images']} {score} images: JAX {100 * scored['jax_accuracy']:.2f}%, "
                + ", ".join(f"{f} {100 * v['accuracy']:.2f}% (agrees with JAX on {100 * v['top1_agreement']:.2f}%)"
                            for f, v in scored["files"].items()))
        manifest_tmp = staging / "export.json"
        manifest_tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(manifest_tmp, directory / "export.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def describe(fmt: str, path: Path, info: dict[str, Any]) -> str:
    """One line per file: format, size, agreement with JAX, op histogram."""
    line = (f"{fmt:13s} {info['bytes'] / 2**20:8.2f} MiB  max|d|={info['max_abs_diff']:.2e}  "
            f"top-1 agreement {100 * info['top1_agreement']:.1f}%  {path}")
    if "ops" in info:
        line += "\n" + " " * 14 + ", ".join(f"{op} {n}" for op, n in info["ops"].items())
    return line


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.ArgumentParser(prog="python -m mobilenet_jax.export", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="a trainer / converter workdir (config.json + checkpoints/)")
    source.add_argument("--model", help="a fresh network by registry name (random weights: for timing)")
    parser.add_argument("--out", required=True, help="directory for the files and export.json")
    parser.add_argument("--formats", nargs="+", default=["all"], help=f"any of {list(FORMATS)}, or all")
    parser.add_argument("--batch", type=int, default=1, help="the fixed batch size (default 1)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input side; default the workdir's, or the network's own (224, Xception 299, SSDLite 320)")
    parser.add_argument("--representative-count", type=int, default=200, help="int8 calibration images")
    parser.add_argument("--dtype", default="float32", help="float32 only; anything else is an error")
    parser.add_argument("--step", type=int, default=None, help="workdir checkpoint step (default the latest)")
    parser.add_argument("--best", action="store_true", help="the workdir's best-accuracy checkpoint")
    parser.add_argument("--width", type=float, default=1.0, help="--model: width multiplier")
    parser.add_argument("--num-classes", type=int, default=1000, help="--model: classes")
    parser.add_argument("--model-kwargs", default="{}", help="--model: more fields as JSON")
    parser.add_argument("--config", default=None, help="--model: a trainer config whose data set calibrates")
    parser.add_argument("--score-split", default="", metavar="SPLIT",
                        help="a classifier's workdir: top-1 of JAX and of each .tflite / .onnx file over this split of "
                             "its data set (e.g. eval), V3 Table 4's float vs int8 accuracy")
    parser.add_argument("--score-limit", type=int, default=-1, help="--score-split: the first N images only")
    args = parser.parse_args(argv)
    formats = list(FORMATS) if args.formats == ["all"] else args.formats
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown format(s) {unknown}; known formats: {list(FORMATS)} or all")
    output_directory(args.out, create=False)
    if args.workdir:
        exportable = from_workdir(args.workdir, batch=args.batch, image_size=args.image_size, dtype=args.dtype,
                                  step=args.step, best=args.best)
    else:
        try:
            kwargs = json.loads(args.model_kwargs)
        except json.JSONDecodeError as e:
            raise UsageError(f"--model-kwargs is not JSON: {e}") from None
        if not isinstance(kwargs, dict):
            raise UsageError("--model-kwargs must be a JSON object")
        config = None
        if args.config:
            from mobilenet_jax.train.config import load_config

            config = load_config(args.config)
        exportable = fresh(args.model, batch=args.batch, image_size=args.image_size, dtype=args.dtype,
                           config=config, width=args.width, num_classes=args.num_classes, **kwargs)
    print(f"exporting {exportable.source}: input {list(exportable.input_shape)} float32")
    if args.score_split and not args.workdir:
        raise UsageError("--score-split scores a trained network: give --workdir")
    export(exportable, args.out, formats, args.representative_count, score=args.score_split,
           score_limit=args.score_limit)
    print(f"manifest: {output_directory(args.out) / 'export.json'}")
    return 0


if __name__ == "__main__":
    cli.main_of(main)
