"""Evaluates a trainer checkpoint (a converted Keras network or a trained run) on a tfds
data set, exactly over the whole split (a detector: COCO AP through pycocotools, see below):

    python -m mobilenet_jax.evaluate --checkpoint DIR --dataset imagenet2012 [--data-dir D]
        [--batch-size B] [--image-size S] [--dtype float32|bfloat16] [--step N] [--best]

DIR is a trainer workdir (`DIR/config.json`, `DIR/checkpoints/<step>`), as written by
`python -m mobilenet_jax.convert` or `python -m mobilenet_jax.train`. Everything else is the
trainer's: the network from the config (`build_model`), the tfds evaluation pipeline
(`data/tfds.py`: center crop of S/(S+32) of the shorter side, resize to S, scale to [-1, 1];
the last partial batch padded and masked) and the pmapped eval step with its exact sums.
The resolution S is the checkpoint's `image_size`: each family's own (224; Xception 299)
for converted Keras networks. Prints one JSON line with top-1, top-5 and the example count.

A detector's workdir (model `ssdlite`) is evaluated on its own data set by default
(`embedded_detection`, or `--dataset coco/2017`) with the trainer's detection task: fixed-size
NMS on the devices, COCO AP, AP50, AP75, per-size AP and AR@100 from pycocotools on the host.

A tfds data set not yet in the data_dir is prepared there first, as the trainer does
(mobilenet_jax/data/prepare.py; the checkpoint config's data_download and data_manual_dir).
"""
from __future__ import annotations

import json
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp

from mobilenet_jax import cli, paths
from mobilenet_jax.errors import UserError


class EvaluationError(UserError, RuntimeError):
    """A checkpoint that cannot be evaluated as asked (a batch size, a data set of another task).
    A missing or corrupt checkpoint directory is a `train.checkpoint.CheckpointError`."""


def evaluate_checkpoint(
    workdir: paths.PathLike, dataset: str = "", *, data_dir: str = "", split: str = "",
    batch_size: Optional[int] = None, image_size: Optional[int] = None,
    dtype: Optional[str] = None, num_devices: int = -1, step: Optional[int] = None,
    best: bool = False,
) -> dict[str, Any]:
    """Exact evaluation of a workdir's checkpoint: {"top1", "top5", "loss", "num_examples",
    "step", "image_size", ...} for a classifier (`dataset` default imagenet2012); COCO's
    {"AP", "AP50", "AP75", "AP_small", ..., "AR100", "step", ...} for a detector (default: the
    data set it was trained on)."""
    from jax.sharding import NamedSharding, PartitionSpec

    from mobilenet_jax.data import build_dataset, prepare_data
    from mobilenet_jax.data.pipeline import device_mesh, host_layout
    from mobilenet_jax.data.tfds import TfdsDataset
    from mobilenet_jax.models import model_task
    from mobilenet_jax.tasks import build_task, evaluator
    from mobilenet_jax.train.checkpoint import load_workdir_config, restore_variables
    from mobilenet_jax.train.config import ConfigError, check_task
    from mobilenet_jax.train.loop import build_model
    from mobilenet_jax.train.state import TrainState

    config = load_workdir_config(workdir)
    if dtype:
        config.dtype = dtype
    size = image_size or config.image_size
    layout = host_layout(num_devices)
    batch = batch_size or 32 * layout.local_devices * layout.process_count
    if batch % (layout.local_devices * layout.process_count):
        raise EvaluationError(
            f"--batch-size {batch} must be a multiple of the device count "
            f"({layout.local_devices} x {layout.process_count} processes)"
        )
    # A classifier's workdir may be a converted Keras network, which knows no data set: it is
    # evaluated on imagenet2012 (or --dataset) read from --data-dir. Every other task's workdir
    # is evaluated on its run's data set, from its run's data_dir, unless the flags say otherwise.
    own_data = model_task(config.model) != "classification"
    dataset = dataset or (config.dataset if own_data else "imagenet2012")
    try:
        check_task(config.model, dataset)  # the trainer's one choice of the task
    except ConfigError as e:
        raise EvaluationError(f"{workdir} cannot be evaluated on --dataset {dataset}: {e}") from e
    # The config as evaluated: the task (build_task) follows its data set and image size.
    config.dataset, config.image_size = dataset, size
    config.data_dir = (data_dir or config.data_dir) if own_data else data_dir
    prepare_data(config)  # prepared on first use as in training, or one line saying how
    if own_data:  # the data set's own pipeline (the run's embedded set, or COCO)
        config.batch_size = config.eval_batch_size = batch
        config.eval_split = split or config.eval_split
        data = build_dataset(config, layout)
    else:
        num_classes = config.num_classes if config.num_classes > 0 else -1
        data = TfdsDataset(
            dataset, image_size=size, batch_size=batch, eval_batch_size=batch, seed=0,
            layout=layout, data_dir=config.data_dir, eval_split=split, num_classes=num_classes,
        )
    model = build_model(config, data.info.num_classes)
    step, variables = restore_variables(workdir, model, size, step=step, best=best)
    state = TrainState(
        step=jnp.asarray(step, jnp.int32), params=variables["params"],
        batch_stats=variables["batch_stats"], opt_state=None, ema_params=None,
    )
    state = jax.device_put(state, NamedSharding(device_mesh(layout.local_devices), PartitionSpec()))
    metrics = evaluator(build_task(config, model))(state, data, layout.local_devices, 2)
    if not own_data:  # the classifier's top-1 / top-5 under their ImageNet names
        metrics = {"top1": metrics["accuracy"], "top5": metrics["top5_accuracy"], "loss": metrics["loss"],
                   "num_examples": metrics["num_examples"]}
    return {
        **metrics, "dataset": dataset, "split": split or "default eval split", "model": config.model,
        "model_kwargs": config.model_kwargs.to_dict(), "image_size": size, "dtype": config.dtype, "step": step,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.ArgumentParser(prog="python -m mobilenet_jax.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a trainer / converter workdir")
    parser.add_argument("--dataset", default="",
                        help="default: imagenet2012 for a classifier, the run's own data set for a detector")
    parser.add_argument("--data-dir", default="", help="tfds data_dir (default: tfds's)")
    parser.add_argument("--split", default="", help="default: the data set's evaluation split")
    parser.add_argument("--batch-size", type=int, default=None, help="global; default 32 per device")
    parser.add_argument("--image-size", type=int, default=None, help="default: the checkpoint config's")
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--num-devices", type=int, default=-1)
    parser.add_argument("--step", type=int, default=None, help="default: the latest")
    parser.add_argument("--best", action="store_true", help="the best checkpoint (by the task's metric: accuracy, AP)")
    args = parser.parse_args(argv)
    result = evaluate_checkpoint(
        args.checkpoint, args.dataset, data_dir=args.data_dir, split=args.split,
        batch_size=args.batch_size, image_size=args.image_size, dtype=args.dtype,
        num_devices=args.num_devices, step=args.step, best=args.best,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    cli.main_of(main)
