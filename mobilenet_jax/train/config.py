"""The one config schema of the trainer, and its validation.

Every file under `configs/` starts from `default_config()` (a locked `ml_collections`
ConfigDict, so a misspelt key is an error) and changes only what its recipe needs.
`validate_config` runs before anything is compiled and turns every impossible setting into
one `ConfigError` that says what to change.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any, Mapping

import ml_collections

from mobilenet_jax.errors import UserError
from mobilenet_jax.train import plateau

# Data sets the trainer can read; `mobilenet_jax.data` dispatches on these names.
TFDS_DATASETS = ("imagenet2012", "cifar10", "cifar100", "imagenette")
TFDS_DETECTION_DATASETS = ("coco/2017",)  # boxes: see mobilenet_jax.data.detection_layout
TFDS_SEGMENTATION_DATASETS = ("cityscapes/semantic_segmentation",)  # masks: mobilenet_jax.segmentation.layout
#: Every tfds set the trainer reads (prepared on first use by `data.prepare_data`).
TFDS_ALL = TFDS_DATASETS + TFDS_DETECTION_DATASETS + TFDS_SEGMENTATION_DATASETS
#: The task each data set's batches are laid out for (a name in `mobilenet_jax.tasks`); a
#: model trains on the data sets of its own task (`Network.task`, checked by `check_task`).
DATASET_TASKS: dict[str, str] = {
    "embedded": "classification",
    "synthetic": "classification",
    **dict.fromkeys(TFDS_DATASETS, "classification"),
    "embedded_detection": "detection",
    **dict.fromkeys(TFDS_DETECTION_DATASETS, "detection"),
    "embedded_segmentation": "segmentation",
    **dict.fromkeys(TFDS_SEGMENTATION_DATASETS, "segmentation"),
}
OPTIMIZERS = ("rmsprop", "sgd", "adam")
SCHEDULES = ("constant", "exponential", "cosine")
DTYPES = ("float32", "bfloat16", "float16")


class ConfigError(UserError, ValueError):
    """A config that cannot train; raised before anything is compiled."""


def default_config() -> ml_collections.ConfigDict:
    """All keys the trainer reads, with defaults. Durations: `*_steps` wins when >= 0."""
    c = ml_collections.ConfigDict()
    # Model: create_model(model, num_classes=<dataset>, dtype=dtype, bn_axis_name=AXIS ("batch"),
    #                     **model_kwargs); its task (Network.task) must be the data set's.
    c.model = "mobilenet_v2"
    c.model_kwargs = ml_collections.ConfigDict({"width": 1.0})
    c.dtype = "bfloat16"  # compute dtype; parameters are always float32
    # Data.
    c.dataset = "embedded"
    c.data_dir = ""  # tfds data_dir ("" = the tfds default), local or a bucket
    # A tfds set missing from data_dir is downloaded and prepared there on first use (process 0;
    # the others wait); False: it is an error instead (a pod whose data must already be in its bucket).
    c.data_download = True
    c.data_manual_dir = ""  # archives of a manual set (imagenet2012); "" = <data_dir>/downloads/manual
    c.image_size = 32  # training and evaluation resolution (the resolution multiplier)
    c.train_split = ""  # "" = the data set's usual train split
    c.eval_split = ""  # "" = the data set's usual evaluation split
    c.shuffle_buffer = 16_384
    c.cache = False  # tf.data cache of decoded examples (small data sets)
    c.embedded_num_train = 20_000
    c.embedded_num_eval = 2_000
    c.embedded_num_validation = 2_000  # the "validation" split (eval_split="validation")
    c.embedded_shape_size = (0.5, 0.8)  # (min, max) shape size, of half the image side
    c.embedded_noise = (0.02, 0.06)  # (min, max) pixel noise s.d. per image (images in [-1, 1])
    c.embedded_seed = -1  # the draw of the embedded images; -1 = config.seed (>= 0: fixed data)
    c.synthetic_num_classes = 1000
    c.max_boxes = -1  # detection: object slots per image; -1 = the data set's (8 embedded, 100 COCO)
    # The embedded detection and segmentation sets (one scene generator) share these knobs.
    c.embedded_detection_classes = ()  # indices into the embedded shapes; () = all ten
    c.embedded_detection_max_objects = 4  # 1..max objects drawn per image (<= max_boxes)
    c.embedded_detection_object_size = (0.15, 0.4)  # (min, max) half-extent of a shape, of the image
    c.num_classes = -1  # -1 = the data set's number of classes
    # Batch and durations.
    c.batch_size = 128  # global batch over all devices of all processes
    c.eval_batch_size = -1  # -1 = batch_size
    c.num_epochs = 10.0
    c.num_train_steps = -1  # >= 0 overrides num_epochs
    c.steps_per_epoch = -1  # -1 = num_train_examples // batch_size
    c.eval_every_steps = -1  # -1 = once per epoch; 0 = only at the end
    c.checkpoint_every_steps = -1  # -1 = once per epoch; 0 = only at the end
    c.log_every_steps = 50
    c.num_eval_steps = -1  # -1 = the whole evaluation split (exact, padded + masked)
    # A held-out split evaluated once, on the final state ("" = none), logged as split "test":
    # experiments monitor and stop on eval_split="validation" and score the claims on "eval".
    c.test_split = ""
    # Stop at a plateau (train/plateau.py): after the eval at which the last
    # `plateau_evals` evaluations have not improved on the best before them by `plateau_delta`
    # (a fraction: 0.005 = half a point of accuracy), at step >= plateau_min_steps, with the best
    # value so far >= plateau_min_value (a run still at chance has not started) and the learning
    # rate still >= plateau_min_lr_fraction of its peak. 0 evals = run the full budget.
    c.plateau_evals = 0
    c.plateau_delta = 0.005
    c.plateau_min_steps = 0
    c.plateau_min_value = 0.0
    # After the plateau: 0 = stop there; N > 0 = decay the learning rate linearly to 0 over N
    # more steps (a cool-down: the final weights settle instead of sampling the plateau's noise).
    c.plateau_cooldown_steps = 0
    c.plateau_min_lr_fraction = 0.5
    # What "not improved" compares: "best" = the best evaluation so far against the next k;
    # "mean" = the mean of the last k evaluations against the mean of the next k (train/plateau.py).
    c.plateau_statistic = "best"
    # Reduce on plateau before stopping: the first `plateau_decays` plateaus multiply the rate by
    # `plateau_decay_factor` and start a new phase whose rule reads only its own evaluations; the
    # next plateau stops the run (or starts its cool-down). 0 = stop at the first plateau.
    c.plateau_decays = 0
    c.plateau_decay_factor = 0.1
    # Optimizer (optim.py).
    c.optimizer = "rmsprop"
    c.learning_rate = 0.045
    c.lr_base_batch_size = -1  # > 0: lr = learning_rate * batch_size / lr_base_batch_size
    c.lr_schedule = "exponential"
    c.lr_decay_rate = 0.98
    c.lr_decay_epochs = 1.0
    c.lr_staircase = True
    c.lr_end_factor = 0.0  # cosine: final lr as a fraction of the peak
    c.warmup_epochs = 0.0
    c.warmup_steps = -1  # >= 0 overrides warmup_epochs
    c.momentum = 0.9
    c.nesterov = False
    c.rmsprop_decay = 0.9
    c.rmsprop_epsilon = 1.0  # TF-slim / tensorflow-tpu MobileNet default (inside the sqrt)
    c.rmsprop_initial_scale = 1.0  # TF1 RMSPropOptimizer starts the mean square at 1
    c.weight_decay = 4e-5  # L2, added to the gradient (= wd/2 * ||w||^2 in the loss)
    c.weight_decay_exclude_depthwise = False
    c.weight_decay_exclude_bn_and_bias = True
    c.label_smoothing = 0.0
    c.grad_clip_norm = 0.0  # 0 = no clipping
    c.ema_decay = 0.0  # 0 = no EMA of the weights; > 0: evaluate with the EMA
    c.ema_warmup = True  # TF ExponentialMovingAverage(num_updates): min(d, (1+t)/(10+t))
    # Run.
    c.seed = 0
    c.num_devices = -1  # local devices to use; -1 = all
    c.prefetch = 2  # batches placed on device ahead of the step
    c.keep_checkpoints = 3
    c.keep_best_checkpoint = True
    c.progress_bar = True
    c.tensorboard = True
    c.compilation_cache_dir = "~/.cache/mobilenet_jax/jax_cache"  # "" = no persistent cache
    c.distributed = ml_collections.ConfigDict(
        {
            # "auto": initialise when JAX_COORDINATOR_ADDRESS is set or coordinator_address
            # is given; "true": always (TPU pods / SLURM auto-detected); "false": never.
            "initialize": "auto",
            "coordinator_address": "",
            "num_processes": -1,
            "process_id": -1,
            "cpu_collectives": "gloo",
        }
    )
    c.lock()
    c.model_kwargs.unlock()  # keys differ per network; create_model validates them
    return c


def dataset_task(dataset: str) -> str:
    """The task of a data set's batches: DATASET_TASKS's; a tfds name outside the table (the
    evaluation command reads any tfds image/label set) is a classification set."""
    return DATASET_TASKS.get(dataset, "classification")


def check_task(model: str, dataset: str) -> str:
    """The task a registered `model` trains on `dataset`: the model's declared task, which must
    be the data set's, else a ConfigError that says what would pair. The one place the task of
    a run is decided (the trainer's `build_task` and the evaluation command use it)."""
    from mobilenet_jax.models import list_models, model_task

    task, data_task = model_task(model), dataset_task(dataset)
    if task != data_task:
        datasets = [d for d, t in DATASET_TASKS.items() if t == task]
        models = [m for m in list_models() if model_task(m) == data_task]
        raise ConfigError(
            f"dataset {dataset!r} and model {model!r} do not make a task: {dataset!r} is a {data_task} "
            f"data set and {model!r} a {task} model; use a {task} data set {datasets} or a "
            f"{data_task} model {models}"
        )
    return task


def _check_keys(config: Mapping, reference: Mapping, prefix: str = "") -> None:
    unknown = sorted(set(config) - set(reference))
    missing = sorted(set(reference) - set(config))
    if unknown or missing:
        raise ConfigError(
            f"config{prefix}: unknown key(s) {unknown}, missing key(s) {missing}; "
            f"start config files from mobilenet_jax.train.config.default_config()"
        )
    for key, value in reference.items():
        if key != "model_kwargs" and isinstance(value, Mapping):
            _check_keys(config[key], value, f"{prefix}.{key}")


# Integer keys: (smallest allowed value, the "unset" sentinel and what it means, or None).
_INT_RANGES: dict[str, tuple[int, tuple[int, str] | None]] = {
    "image_size": (1, None),
    "batch_size": (1, None),
    "eval_batch_size": (1, (-1, "batch_size")),
    "num_train_steps": (0, (-1, "use num_epochs")),
    "steps_per_epoch": (1, (-1, "num_train_examples // batch_size")),
    "eval_every_steps": (0, (-1, "once per epoch")),
    "checkpoint_every_steps": (0, (-1, "once per epoch")),
    "log_every_steps": (1, None),
    "num_eval_steps": (0, (-1, "the whole evaluation split")),
    "warmup_steps": (0, (-1, "use warmup_epochs")),
    "lr_base_batch_size": (1, (-1, "no scaling")),
    "num_classes": (2, (-1, "the data set's")),
    "num_devices": (1, (-1, "all local devices")),
    "embedded_num_train": (1, None),
    "embedded_num_eval": (1, None),
    "embedded_num_validation": (1, None),
    "embedded_seed": (0, (-1, "config.seed")),
    "plateau_evals": (0, None),
    "plateau_min_steps": (0, None),
    "plateau_cooldown_steps": (0, None),
    "plateau_decays": (0, None),
    "synthetic_num_classes": (2, None),
    "max_boxes": (1, (-1, "the data set's")),
    "embedded_detection_max_objects": (1, None),
    "shuffle_buffer": (1, None),
    "prefetch": (0, None),
    "keep_checkpoints": (1, None),
}
# Float keys: the interval, as (low, high, "[)"-style closedness).
_INF = float("inf")
_FLOAT_RANGES: dict[str, tuple[float, float, str]] = {
    "learning_rate": (0.0, _INF, "()"),
    "num_epochs": (0.0, _INF, "[)"),
    "lr_decay_epochs": (0.0, _INF, "[)"),
    "warmup_epochs": (0.0, _INF, "[)"),
    "lr_end_factor": (0.0, 1.0, "[]"),
    "momentum": (0.0, 1.0, "[)"),
    "rmsprop_decay": (0.0, 1.0, "[)"),
    "rmsprop_epsilon": (0.0, _INF, "()"),
    "rmsprop_initial_scale": (0.0, _INF, "[)"),
    "weight_decay": (0.0, _INF, "[)"),
    "grad_clip_norm": (0.0, _INF, "[)"),
    "ema_decay": (0.0, 1.0, "[)"),
    "label_smoothing": (0.0, 1.0, "[)"),
    "plateau_delta": (0.0, 1.0, "[)"),
    "plateau_min_value": (-_INF, _INF, "()"),
    "plateau_min_lr_fraction": (0.0, 1.0, "[]"),
    "plateau_decay_factor": (0.0, 1.0, "()"),
}


def _check_ranges(config: ml_collections.ConfigDict) -> None:
    """Every count, size, rate and factor in its range, named by its key (a negative step
    count must not quietly mean "unset": only the documented sentinel -1 does)."""
    for key, (low, sentinel) in _INT_RANGES.items():
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config.{key}={value!r} must be an integer")
        if value < low and (sentinel is None or value != sentinel[0]):
            unset = f", or {sentinel[0]} (= {sentinel[1]})" if sentinel else ""
            raise ConfigError(f"config.{key}={value} must be >= {low}{unset}")
    for key, (low, high, closed) in _FLOAT_RANGES.items():
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config.{key}={value!r} must be a number")
        above = value >= low if closed[0] == "[" else value > low
        below = value <= high if closed[1] == "]" else value < high
        if not (above and below):  # NaN fails both
            raise ConfigError(f"config.{key}={value} must be in {closed[0]}{low:g}, {high:g}{closed[1]}")


def validate_config(
    config: ml_collections.ConfigDict, *, num_devices: int | None = None, process_count: int = 1
) -> None:
    """Raises ConfigError for any setting that cannot train. Nothing is compiled here.

    `num_devices` is the number of local devices the run will use (defaults to all local
    devices when jax is importable); the global batch must split evenly over all devices.
    """
    _check_keys(config, default_config())
    _check_ranges(config)
    if config.dataset not in DATASET_TASKS:
        raise ConfigError(f"unknown dataset {config.dataset!r}; known data sets: {list(DATASET_TASKS)}")
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {config.optimizer!r}; known: {list(OPTIMIZERS)}")
    if config.lr_schedule not in SCHEDULES:
        raise ConfigError(f"unknown lr_schedule {config.lr_schedule!r}; known: {list(SCHEDULES)}")
    if config.plateau_statistic not in plateau.STATISTICS:
        raise ConfigError(f"unknown plateau_statistic {config.plateau_statistic!r}; known: {list(plateau.STATISTICS)}")
    if config.dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {config.dtype!r}; known: {list(DTYPES)}")
    from mobilenet_jax import create_model, list_models, model_fields

    if config.model not in list_models():
        raise ConfigError(f"unknown model {config.model!r}; known models: {list_models()}")
    check_task(config.model, config.dataset)
    reserved = {"num_classes", "dtype", "bn_axis_name"} & set(config.model_kwargs)
    if reserved:
        from mobilenet_jax.data.pipeline import AXIS

        raise ConfigError(
            f"model_kwargs may not set {sorted(reserved)}: the trainer sets them "
            f"(num_classes from the data set, dtype from config.dtype, bn_axis_name={AXIS!r})"
        )
    unknown = sorted(set(config.model_kwargs) - set(model_fields(config.model)))
    if unknown:
        raise ConfigError(
            f"model_kwargs {unknown} are not fields of {config.model}; "
            f"its fields are {sorted(model_fields(config.model))}"
        )
    # The network's own checks of its field values (a width <= 0, ...): nothing is built.
    create_model(config.model, num_classes=max(config.num_classes, 2), **config.model_kwargs)
    if num_devices is None:
        import jax

        num_devices = jax.local_device_count() if config.num_devices < 0 else config.num_devices
    total = num_devices * process_count
    for key in ("batch_size", "eval_batch_size"):
        value = config[key] if config[key] > 0 or key == "batch_size" else config.batch_size
        if value <= 0 or value % total:
            raise ConfigError(
                f"config.{key}={value} must be a positive multiple of the number of devices "
                f"({num_devices} local x {process_count} process(es) = {total})"
            )
    if config.dataset in ("embedded_detection", "embedded_segmentation"):
        _check_embedded_detection(config)
    if config.dataset in ("embedded", "embedded_detection", "embedded_segmentation"):
        _check_embedded(config)
    if config.plateau_evals > 0 and config.eval_every_steps == 0:
        raise ConfigError("config.plateau_evals > 0 stops at a plateau of the periodic evaluations: "
                          "set config.eval_every_steps > 0 (or -1, once per epoch)")
    if config.num_train_steps < 0 and config.num_epochs <= 0:
        raise ConfigError("set config.num_epochs > 0 or config.num_train_steps >= 0")
    if config.lr_schedule == "exponential" and not (
        0 < config.lr_decay_rate <= 1 and config.lr_decay_epochs > 0
    ):
        raise ConfigError(
            f"exponential decay needs 0 < config.lr_decay_rate <= 1 (got {config.lr_decay_rate}) "
            f"and config.lr_decay_epochs > 0 (got {config.lr_decay_epochs})"
        )
    if not isinstance(config.data_download, bool):
        raise ConfigError(f"config.data_download={config.data_download!r} must be True or False")
    if config.distributed.initialize not in ("auto", "true", "false"):
        raise ConfigError("config.distributed.initialize must be 'auto', 'true' or 'false'")


def _check_embedded(config: ml_collections.ConfigDict) -> None:
    """The embedded sets' splits, shape sizes and noise (data/embedded.make_split)."""
    from mobilenet_jax.data.embedded import SPLITS

    for key in ("eval_split", "test_split"):
        if config[key] and config[key] not in SPLITS:
            raise ConfigError(f"config.{key}={config[key]!r}: the embedded sets' splits are {list(SPLITS)}")
    if config.train_split not in ("", "train"):
        raise ConfigError(f"config.train_split={config.train_split!r}: the embedded sets train on 'train'")
    size = tuple(config.embedded_shape_size)
    if len(size) != 2 or not all(isinstance(v, (int, float)) for v in size) or not 0 < size[0] <= size[1] < 0.95:
        raise ConfigError(f"config.embedded_shape_size={size} must be (min, max) with "
                          "0 < min <= max < 0.95 (fractions of half the image side)")
    noise = tuple(config.embedded_noise)
    if len(noise) != 2 or not all(isinstance(v, (int, float)) for v in noise) or not 0 <= noise[0] <= noise[1]:
        raise ConfigError(f"config.embedded_noise={noise} must be (min, max) with 0 <= min <= max "
                          "(pixel noise standard deviations)")


def _check_embedded_detection(config: ml_collections.ConfigDict) -> None:
    """The embedded detection set's knobs (data/embedded_detection.make_split), named by key."""
    from mobilenet_jax.data.embedded import NUM_CLASSES
    from mobilenet_jax.data.embedded_detection import MAX_BOXES

    classes = tuple(config.embedded_detection_classes)
    if len(set(classes)) != len(classes) or not set(classes) <= set(range(NUM_CLASSES)):
        raise ConfigError(f"config.embedded_detection_classes={classes} must be distinct indices "
                          f"0..{NUM_CLASSES - 1} into the embedded shapes (or () for all ten)")
    slots = MAX_BOXES if config.max_boxes < 0 else config.max_boxes
    if config.embedded_detection_max_objects > slots:
        raise ConfigError(f"config.embedded_detection_max_objects={config.embedded_detection_max_objects} "
                          f"exceeds the {slots} object slots per image (config.max_boxes)")
    size = tuple(config.embedded_detection_object_size)
    if len(size) != 2 or not all(isinstance(v, (int, float)) for v in size) or not 0 < size[0] <= size[1] < 1:
        raise ConfigError(f"config.embedded_detection_object_size={size} must be (min, max) "
                          "with 0 < min <= max < 1 (half-extents, as fractions of the image)")


def load_config(path: str, overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
    """`get_config()` of a config file, with dotted-key overrides, e.g.

    `load_config("configs/embedded.py", {"batch_size": 64, "model_kwargs.width": 0.35})`.
    The in-process equivalent of `--config path --config.batch_size=64`.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(
        f"_mobilenet_jax_config_{abs(hash(os.path.abspath(path)))}", path
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from mobilenet_jax.overrides import apply_overrides

    return apply_overrides(module.get_config(), overrides or {})
