"""MobileNetV3 Table 6 at CPU scale: SSDLite on V1, V2, V3-Large, V3-Large with the halved
tail, V3-Small: sizes at 320x320 beside the paper's columns, and AP50 / AP after a short
training on the embedded detection set (the easy set of tests/test_detection_train.py).

    python -m experiments.detection_backbones [--steps 100] [--width 0.35] [--seeds 0]

Writes results/detection_backbones/{summary.csv, report.md, predictions.png}. At CPU scale
(64x64, a hundred steps) SSD is far from converged: the AP columns measure how fast each
backbone starts to detect, not Table 6's COCO mAP; one seed unless --seeds gives more.
"""
from __future__ import annotations

import argparse
import tempfile
import time


BACKBONES = [  # (name, backbone, reduced_tail, paper params, paper MAdds, paper COCO mAP)
    ("V1", "mobilenet_v1", False, 5.1e6, 1.3e9, 22.2),
    ("V2", "mobilenet_v2", False, 4.3e6, 0.80e9, 22.1),
    ("V3-Large", "mobilenet_v3_large", False, 4.97e6, 0.62e9, 22.0),
    ("V3-Large halved tail", "mobilenet_v3_large", True, 3.22e6, 0.51e9, 22.0),
    ("V3-Small", "mobilenet_v3_small", False, 2.49e6, 0.21e9, 16.0),
]
SIZE = 64


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--width", type=float, default=0.35)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="results/detection_backbones")
    args = parser.parse_args(argv)

    import jax

    from experiments.common import write_csv
    from mobilenet_jax import paths
    from mobilenet_jax.data import ArrayDataset, DatasetInfo, HostLayout
    from mobilenet_jax.data.embedded_detection import make_split
    from mobilenet_jax.models import create_model
    from mobilenet_jax.profile import model_size
    from mobilenet_jax.train import load_config, train_and_evaluate

    kw = dict(classes=(0, 2, 6), max_objects=2, min_size=0.3, max_size=0.5)
    train, evals = make_split("train", 2048, SIZE, **kw), make_split("eval", 128, SIZE, **kw)
    out = paths.resolve(args.out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    rows, last = [], None
    for label, backbone, tail, p_params, p_madds, p_map in BACKBONES:
        extra = {"reduced_tail": True} if tail else {}
        size = model_size(create_model("ssdlite", backbone=backbone, num_classes=90, **extra), 320)
        for seed in args.seeds:
            config = load_config("configs/detection_embedded.py", {
                "model_kwargs": dict(backbone=backbone, width=args.width, bn_momentum=0.9, **extra),
                "num_train_steps": args.steps, "num_devices": 1, "eval_every_steps": 0,
                "checkpoint_every_steps": 0, "progress_bar": False, "tensorboard": False,
                "eval_batch_size": 64, "seed": seed})
            data = ArrayDataset(DatasetInfo("embedded_detection", 2048, 128, 3, SIZE), train, evals,
                                batch_size=config.batch_size, eval_batch_size=64, seed=seed,
                                layout=HostLayout(0, 1, 1))
            t0 = time.time()
            with tempfile.TemporaryDirectory() as workdir:
                result = train_and_evaluate(config, workdir, dataset=data)
            last = (config, result["state"])
            rows.append(dict(backbone=label, seed=seed, width=args.width, steps=args.steps,
                             AP50=round(result["eval_AP50"], 4), AP=round(result["eval_AP"], 4),
                             train_loss=round(result["train_loss"], 3), minutes=round((time.time() - t0) / 60, 1),
                             params_320=size.params, params_320_without_bn=size.params - size.batch_stats,
                             madds_320=size.madds, paper_params=p_params, paper_madds=p_madds,
                             paper_coco_map=p_map))
            print(rows[-1], flush=True)
    write_csv(out / "summary.csv", rows)
    lines = ["# SSDLite backbones (MobileNetV3 Table 6) at CPU scale", "",
             f"`python -m experiments.detection_backbones --steps {args.steps} --width {args.width} "
             f"--seeds {' '.join(map(str, args.seeds))}`; jax {jax.__version__}, 2 shared CPU cores.", "",
             "| backbone | params @320 (w/o BN) | paper | MAdds @320 | paper | COCO mAP (paper) | "
             f"AP50 here | AP here |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backbone']} (seed {r['seed']}) | {r['params_320_without_bn'] / 1e6:.2f}M | "
                     f"{r['paper_params'] / 1e6:.2f}M | {r['madds_320'] / 1e9:.3f}B | {r['paper_madds'] / 1e9:.2f}B | "
                     f"{r['paper_coco_map']} | {r['AP50']:.3f} | {r['AP']:.3f} |")
    lines += ["", "Sizes: 90 COCO classes + background, 320x320, width 1 (the paper's setting). AP: "
              f"width {args.width}, {SIZE}x{SIZE}, {args.steps} Adam steps of 32 images, 128 eval images, "
              "one seed per row: far from converged, differences of a few thousandths are noise."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    if last is not None:
        _plot(out / "predictions.png", last, evals)
    return 0


def _plot(path, last, evals) -> None:
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    from mobilenet_jax.detection.task import DetectionTask
    from mobilenet_jax.models import create_model

    config, state = last
    model = create_model(config.model, num_classes=3, **config.model_kwargs)
    task = DetectionTask(model, SIZE)
    det = jax.device_get(jax.jit(task.eval_step())(
        {"params": jax.device_get(state.params), "batch_stats": jax.device_get(state.batch_stats)},
        {"image": evals["image"][:8]}))
    fig, axes = plt.subplots(2, 4, figsize=(10, 5))
    for i, ax in enumerate(axes.flat):
        ax.imshow((evals["image"][i] + 1) / 2)
        for b in evals["boxes"][i][evals["box_mask"][i]]:
            ax.add_patch(patches.Rectangle(b[:2] * SIZE - 0.5, *(b[2:] - b[:2]) * SIZE, fill=False, color="lime"))
        for b, s, c in zip(det["boxes"][i][:3], det["scores"][i][:3], det["classes"][i][:3]):
            ax.add_patch(patches.Rectangle(b[:2] * SIZE - 0.5, *(b[2:] - b[:2]) * SIZE, fill=False, color="red"))
            ax.text(b[0] * SIZE, b[1] * SIZE, f"{c}:{s:.2f}", color="red", fontsize=6)
        ax.axis("off")
    fig.suptitle("ground truth (green), top-3 detections (red), last backbone trained")
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
