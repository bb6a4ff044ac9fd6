"""bfloat16 vs float32 top-1 agreement, measured:

    python -m benchmarks.bf16_agreement [--images 256] [--train-steps 400]

Two tables. *Random weights*: for each family a keras.applications model with random weights
and randomised BatchNorm statistics (tests/_keras_weights.py) is converted and run on random
images in float32 and in bfloat16 compute (float32 parameters); also float32 with only the
*input* rounded to bfloat16 (how sensitive the random network is by itself). *Trained*: each
family trained by the trainer (configs/embedded.py, CPU-scale width, 32x32, --train-steps
steps) and run in both dtypes on the embedded eval images and on random images. Random-weight
networks have near-tied logits, so they bound agreement from below; trained weights are what
the >= 99% target is about (ImageNet weights cannot be downloaded here; the converter is exact
to 1e-5, so a converted network's bf16 behaviour is its weights', not the converter's).
Writes benchmarks/results/bf16_agreement-<date>.json.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

from mobilenet_jax import cli

os.environ.setdefault("KERAS_BACKEND", "jax")

CASES = [
    ("mobilenet_v1", dict(width=0.25), 32),
    ("mobilenet_v2", dict(width=1.3), 32),
    ("mobilenet_v3_large", dict(width=0.75), 32),
    ("mobilenet_v3_small", dict(width=1.0), 48),
    ("xception", dict(), 71),
]


def measure(name: str, variant: dict, resolution: int, images: int) -> dict:
    import jax.numpy as jnp
    import numpy as np

    from mobilenet_jax.weights import convert_keras
    from tests._keras_weights import random_images, random_keras_model
    from tests.test_weights_keras import logits, ours_for

    model = ours_for(name, variant)
    variables = convert_keras(random_keras_model(name, resolution, **variant), model)
    x = random_images(images, resolution, seed=2)
    f32 = np.asarray(logits(model, variables, x)).argmax(-1)
    bf16 = np.asarray(logits(ours_for(name, variant, dtype=jnp.bfloat16), variables, x)).argmax(-1)
    rounded = np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32)
    input_only = np.asarray(logits(model, variables, rounded)).argmax(-1)
    return {"model": name, **variant, "resolution": resolution, "images": images,
            "bf16_top1_agreement": float(np.mean(f32 == bf16)),
            "input_rounding_top1_agreement": float(np.mean(f32 == input_only))}


# Trained at CPU scale: the ablations' widths, 32x32 (configs/embedded.py's recipe).
TRAINED_CASES = [
    ("mobilenet_v2", dict(width=0.35)),
    ("mobilenet_v3_large", dict(width=0.35)),
    ("xception", dict(width=0.25)),
]


def measure_trained(name: str, variant: dict, images: int, steps: int, workdir: Path) -> dict:
    """Train `name` on the embedded data for `steps`, then compare f32 and bf16 top-1."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mobilenet_jax import create_model
    from mobilenet_jax.data import embedded
    from mobilenet_jax.train import load_config, train_and_evaluate

    overrides = {"model": name, "num_train_steps": steps, "embedded_num_train": 8000, "embedded_num_eval": images,
                 "eval_every_steps": 0, "checkpoint_every_steps": 0, "num_devices": 1, "progress_bar": False,
                 "tensorboard": False, **{f"model_kwargs.{k}": v for k, v in variant.items()}}
    config = load_config(str(Path(__file__).parents[1] / "configs" / "embedded.py"), overrides)
    result = train_and_evaluate(config, str(workdir / name))
    variables = {"params": result["state"].params, "batch_stats": result["state"].batch_stats}
    x_eval, y_eval = embedded.make_split("eval", images, config.image_size)
    x_rand = np.random.default_rng(2).uniform(-1, 1, x_eval.shape).astype(np.float32)

    def top1(dtype):  # one compiled forward per dtype, for both image sets
        model = create_model(name, num_classes=embedded.NUM_CLASSES, dtype=dtype, **config.model_kwargs)
        apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
        return [np.asarray(jnp.asarray(apply(variables, x), jnp.float32)).argmax(-1) for x in (x_eval, x_rand)]

    (f32_eval, f32_rand), (bf16_eval, bf16_rand) = top1(jnp.float32), top1(jnp.bfloat16)
    return {"model": name, **variant, "resolution": config.image_size, "train_steps": steps, "images": images,
            "eval_accuracy_f32": float(np.mean(f32_eval == y_eval)),
            "bf16_top1_agreement_eval_images": float(np.mean(f32_eval == bf16_eval)),
            "bf16_top1_agreement_random_images": float(np.mean(f32_rand == bf16_rand))}


def main(argv=None) -> int:
    parser = cli.ArgumentParser(prog="python -m benchmarks.bf16_agreement", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--train-steps", type=int, default=400, help="steps per trained network (0: skip them)")
    parser.add_argument("--models", nargs="*", default=[], choices=sorted({case[0] for case in CASES}),
                        help="only these families (default: all)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bf16_agreement")
    args = parser.parse_args(argv)
    if args.images < 1 or args.train_steps < 0:
        parser.error("--images must be >= 1 and --train-steps >= 0")
    wanted = lambda name: not args.models or name in args.models  # noqa: E731
    rows = [measure(*case, args.images) for case in CASES if wanted(case[0])]
    print("random weights (converted Keras), random images")
    print(f"{'model':<20} {'variant':<12} {'res':>4} {'bf16 agree':>10} {'input-only':>10}")
    for r in rows:
        variant = ",".join(f"{k}={r[k]}" for k in ("width",) if k in r)
        print(f"{r['model']:<20} {variant:<12} {r['resolution']:>4} {r['bf16_top1_agreement']:>10.4f} "
              f"{r['input_rounding_top1_agreement']:>10.4f}")
    trained = [measure_trained(*case, 1000, args.train_steps, args.workdir)
               for case in (TRAINED_CASES if args.train_steps > 0 else []) if wanted(case[0])]
    if trained:
        print(f"trained on the embedded data ({args.train_steps} steps), 1000 eval / 1000 random images")
        print(f"{'model':<20} {'variant':<12} {'eval acc':>8} {'agree eval':>10} {'agree random':>12}")
    for r in trained:
        print(f"{r['model']:<20} width={r['width']:<6} {r['eval_accuracy_f32']:>8.3f} "
              f"{r['bf16_top1_agreement_eval_images']:>10.4f} {r['bf16_top1_agreement_random_images']:>12.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.train_steps}steps-" + "-".join(args.models) if args.models else ""
    path = args.out / f"bf16_agreement-{dt.date.today().isoformat()}{suffix}.json"
    path.write_text(json.dumps({"command": "python -m benchmarks.bf16_agreement " + " ".join(argv or sys.argv[1:]),
                                "rows": rows, "trained": trained}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    cli.main_of(main)
