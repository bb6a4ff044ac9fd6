"""Keras weights -> a trainer checkpoint:

    python -m mobilenet_jax.convert --keras PATH --model NAME [--width W] [--minimalistic]
        [--depth-multiplier M] [--num-classes N] [--image-size S] [--config configs/x.py] --out DIR

DIR becomes a trainer workdir: `DIR/checkpoints/0` is an orbax checkpoint of the step-0
TrainState (the converted params and batch_stats, a fresh optimizer state), and
`DIR/config.json` the trainer config that rebuilds the network with Keras's semantics
(`model_kwargs` include `keras_model_overrides`). `python -m mobilenet_jax.evaluate
--checkpoint DIR` evaluates it; `python -m mobilenet_jax.train --workdir DIR --config C`
resumes (fine-tunes) from it when C has the same model, optimizer and EMA setting as the
`--config` given here (default: the trainer's default config).
"""
from __future__ import annotations

import json
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from mobilenet_jax import cli, paths
from mobilenet_jax.errors import UsageError, UserError


def trainer_config(
    model: str, model_kwargs: dict[str, Any], num_classes: int, image_size: int,
    base: Optional[str] = None,
) -> ml_collections.ConfigDict:
    """The trainer config of a converted network: `base` (a config file; default the
    trainer's defaults) with the model, its Keras-semantics fields, ImageNet and float32."""
    from mobilenet_jax.train.config import default_config, load_config

    config = load_config(base) if base else default_config()
    config.model = model
    config.model_kwargs = ml_collections.ConfigDict(model_kwargs)
    config.num_classes = num_classes
    config.image_size = image_size
    config.dataset = "imagenet2012"
    config.dtype = "float32"
    return config


def write_checkpoint(config: ml_collections.ConfigDict, variables: dict, out: paths.PathLike) -> str:
    """Writes `variables` as the step-0 TrainState of `config` into workdir `out` with the
    trainer's own checkpointing; returns the checkpoint path."""
    from mobilenet_jax.train.checkpoint import Checkpoints
    from mobilenet_jax.train.loop import build_model
    from mobilenet_jax.train.optim import build_optimizer, resolve_durations
    from mobilenet_jax.train.state import create_train_state

    out = paths.writable_dir(out, "--out")
    if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
        raise UserError(f"{out}/checkpoints is not empty; choose a new --out directory")
    model = build_model(config, config.num_classes)
    # The optimizer state's structure does not depend on the schedule's length.
    tx, _ = build_optimizer(config, resolve_durations(config, steps_per_epoch=1))
    state = create_train_state(model, tx, jax.random.key(0), config.image_size, config.ema_decay > 0)
    params = jax.tree_util.tree_map(jnp.asarray, variables["params"])
    state = state.replace(
        params=params,
        batch_stats=jax.tree_util.tree_map(jnp.asarray, variables["batch_stats"]),
        opt_state=tx.init(params),
        ema_params=params if state.ema_params is not None else None,
    )
    ckpts = Checkpoints(out, keep=1, keep_best=False)
    try:
        path = ckpts.save(state)
    finally:
        ckpts.close()
    (out / "config.json").write_text(config.to_json_best_effort(indent=2))
    return path


def convert(
    keras_path: paths.PathLike, model: str, out: paths.PathLike, *, width: float = 1.0, num_classes: int = 1000,
    image_size: Optional[int] = None, minimalistic: bool = False, depth_multiplier: int = 1,
    base_config: Optional[str] = None,
) -> str:
    """Converts a Keras file into a trainer workdir `out`; returns the checkpoint path."""
    from mobilenet_jax import create_model
    from mobilenet_jax.weights import convert_keras, keras_model_overrides

    kwargs: dict[str, Any] = {"width": width, **keras_model_overrides(model)}
    if minimalistic:
        if not model.startswith("mobilenet_v3"):
            raise UsageError("--minimalistic is a MobileNetV3 variant")
        kwargs["minimalistic"] = True
    if depth_multiplier != 1:
        if model != "mobilenet_v1":
            raise UsageError("--depth-multiplier is a MobileNetV1 setting")
        kwargs["depth_multiplier"] = depth_multiplier
    network = create_model(model, num_classes=num_classes, **kwargs)
    variables = convert_keras(keras_path, network)
    size = image_size or network.default_resolution
    return write_checkpoint(trainer_config(model, kwargs, num_classes, size, base_config), variables, out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.ArgumentParser(prog="python -m mobilenet_jax.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keras", required=True, help="a .weights.h5, legacy .h5 or .keras file")
    parser.add_argument("--model", required=True, help="mobilenet_v1 | mobilenet_v2 | mobilenet_v3_large | mobilenet_v3_small | xception")
    parser.add_argument("--out", required=True, help="the trainer workdir to create")
    parser.add_argument("--width", type=float, default=1.0, help="Keras's alpha")
    parser.add_argument("--minimalistic", action="store_true", help="MobileNetV3 minimalistic")
    parser.add_argument("--depth-multiplier", type=int, default=1, help="MobileNetV1 depth_multiplier")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=None, help="default: the network's (224, Xception 299)")
    parser.add_argument("--config", default=None, help="trainer config to fine-tune with (optimizer/EMA state)")
    args = parser.parse_args(argv)
    path = convert(
        args.keras, args.model, args.out, width=args.width, num_classes=args.num_classes,
        image_size=args.image_size, minimalistic=args.minimalistic,
        depth_multiplier=args.depth_multiplier, base_config=args.config,
    )
    print(json.dumps({"checkpoint": path, "workdir": paths.to_str(args.out)}))
    return 0


if __name__ == "__main__":
    cli.main_of(main)
