"""MobileNetV3 Table 6 at CPU scale: SSDLite on V1, V2, V3-Large, V3-Large with the halved tail and
V3-Small, trained on the embedded detection set; COCO AP with the other experiments' statistics.

``python -m experiments.detection_backbones`` (see ``--help`` for runtime and options).

Every variant is the one SSDLite (mobilenet_jax/detection/ssdlite.py: the first head on C4, the
second on C5, four extra layers) on another backbone, trained by the one trainer from the same
config (configs/detection_embedded.py), five seeds each. The report adds Table 6's columns: the
parameters and multiply-adds of each detector at 320x320 with COCO's 90 classes, counted from the
module beside the paper's, and a figure of each backbone's detections on the same eval images.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from experiments import plots, reports, runs, stats
from experiments.ablation import Ablation, main
from mobilenet_jax import cli

DETECTION_CONFIG = runs.REPO_ROOT / "configs" / "detection_embedded.py"

# (group, label, model_kwargs, Table 6: params (M), MAdds (B), COCO mAP)
BACKBONES = (
    ("v1", "V1", {"backbone": "mobilenet_v1", "reduced_tail": False}, 5.1, 1.3, 22.2),
    ("v2", "V2", {"backbone": "mobilenet_v2", "reduced_tail": False}, 4.3, 0.80, 22.1),
    ("v3-large", "V3-Large", {"backbone": "mobilenet_v3_large", "reduced_tail": False}, 4.97, 0.62, 22.0),
    ("v3-large-half", "V3-Large, halved tail", {"backbone": "mobilenet_v3_large", "reduced_tail": True}, 3.22, 0.51,
     22.0),
    ("v3-small", "V3-Small", {"backbone": "mobilenet_v3_small", "reduced_tail": False}, 2.49, 0.21, 16.0),
)
PAPER = {g: dict(params=p, madds=m, map=a) for g, _, _, p, m, a in BACKBONES}
COCO_CLASSES = 90  # V3 Table 6 (the TF API's label map); the V2 paper's row is checked at 80 in the tests


# The margin within which two detectors' AP counts as the paper's "same mAP" (declared before the
# runs): one AP point, the spread of Table 6's V1/V2/V3-Large rows (22.0-22.2) five times over.
EQUAL_MARGIN = 1.0


def _claim(better: str, worse: str, source: str, relation: str = ">") -> stats.Claim:
    return stats.Claim(better, worse, (round(PAPER[better]["map"] - PAPER[worse]["map"], 1),) * 2, source,
                       quantity="COCO AP", relation=relation, margin=EQUAL_MARGIN if relation == "=" else None)


def sizes_and_predictions(groups: Mapping[str, runs.GroupStats], configs: Mapping[str, Any], exp_dir: Path):
    """The report's Table 6 columns (parameters and multiply-adds at 320 with 90 classes, counted from
    the module, beside the paper's) and the predictions figure (from the runs' checkpoints)."""
    from mobilenet_jax.models import create_model
    from mobilenet_jax.sizes import model_size

    rows = []
    for group, label, kwargs, *_ in BACKBONES:
        if group not in groups:
            continue
        size = model_size(create_model("ssdlite", num_classes=COCO_CLASSES, **kwargs), 320)
        weights = size.params - size.batch_stats  # the paper counts no BN moving statistics
        s, p = groups[group], PAPER[group]
        finals = [runs.read_json(exp_dir / "runs" / f"{group}-s{seed}" / "final.json")["summary"] for seed in s.seeds]
        ap50 = [f.get("test_AP50", f.get("eval_AP50")) for f in finals]
        rows.append([label, f"{weights / 1e6:.2f}M", f"{p['params']:.2f}M", f"{size.madds / 1e9:.3f}B",
                     f"{p['madds']:.2f}B", f"{p['map']:.1f}", stats.mean_ci(s.finals).fmt_level(),
                     stats.mean_ci(ap50).fmt_level() if None not in ap50 else "–"])
    table = reports.markdown_table(
        ["backbone", "params @320", "paper", "MAdds @320", "paper", "COCO mAP (paper)",
         "AP here (x100), mean [95% t CI]", "AP50 here (x100)"], rows)
    note = (f"Sizes: SSDLite at 320x320, width 1.0, {COCO_CLASSES} classes + background, as in V3 Table 6; parameters "
            "without BatchNorm's moving statistics (the convention of the paper's counts, which "
            "`python -m mobilenet_jax.summary` also lists). V2: the V3 paper repeats V2 Table 6's 4.3M, counted for "
            "COCO's 80 classes, where this SSDLite-V2 counts 4.29M and 0.789B (tests/test_detection_sizes.py checks "
            "it against a formula built on Keras's MobileNetV2); at 90 classes it is 4.45M. V1 counts 5.21M and "
            "1.32B at 90 classes, 5.06M and 1.31B at 80: the paper's 5.1M fits 80 classes, like V2's row. The AP "
            "columns are this run's final COCO AP@[.5:.95] and AP50 on the embedded set, not COCO.")
    figures, stale = [], False
    path = exp_dir / "predictions.png"
    try:
        drew = _plot_predictions(path, configs, exp_dir, groups)
    except _NoCheckpoint:  # the run that trained drew it; its checkpoints are not committed
        drew, stale = False, True
    if drew or path.exists():
        caption = ("Ground truth (green) and each backbone's three highest-scoring detections (red, class:score) on "
                   "the same eval images, seed 0's final checkpoint.")
        if stale:
            caption += (" (Not redrawn by this invocation: seed 0's checkpoints are not committed; the figure is from "
                        "the run that trained.)")
        figures.append((caption, "predictions.png"))
    return figures, [("Table 6 columns", table + "\n\n" + note)]


class _NoCheckpoint(Exception):
    pass


def _plot_predictions(path: Path, configs: Mapping[str, Any], exp_dir: Path,
                      groups: Mapping[str, runs.GroupStats], num_images: int = 4) -> bool:
    """One row per backbone: its seed's final checkpoint on the first eval images."""
    import jax

    from mobilenet_jax.data import embedded_detection_num_classes, embedded_detection_split
    from mobilenet_jax.models import create_model
    from mobilenet_jax.tasks.detection import DetectionTask
    from mobilenet_jax.train.checkpoint import restore_variables

    order = [g for g, *_ in BACKBONES if g in groups]
    first = runs.set_config_seed(configs[order[0]], int(groups[order[0]].seeds[0]))
    size = first.image_size
    evals = embedded_detection_split(first, "eval")  # the eval set the drawn seed's runs saw
    images = evals["image"][:num_images]
    detections = {}
    for g in order:
        workdir = exp_dir / "runs" / f"{g}-s{groups[g].seeds[0]}"
        if not (workdir / "checkpoints").is_dir():
            raise _NoCheckpoint(f"{workdir}/checkpoints is gone (checkpoints are not committed)")
        config = configs[g]
        model = create_model(config.model, num_classes=embedded_detection_num_classes(config), **dict(config.model_kwargs))
        _, variables = restore_variables(workdir, model, size)
        detections[g] = jax.device_get(jax.jit(DetectionTask(model, size).eval_step())(variables, {"image": images}))

    plt = plots._pyplot()
    import matplotlib.patches as patches

    labels = {g: label for g, label, *_ in BACKBONES}
    fig, axes = plt.subplots(len(order), num_images, figsize=(2.0 * num_images, 2.1 * len(order)), squeeze=False)
    for row, g in enumerate(order):
        det = detections[g]
        for i in range(num_images):
            ax = axes[row, i]
            ax.imshow((images[i] + 1) / 2)
            for b in evals["boxes"][i][evals["box_mask"][i]]:
                ax.add_patch(patches.Rectangle(b[:2] * size - 0.5, *(b[2:] - b[:2]) * size, fill=False,
                                               color="lime", lw=1.2))
            for b, s, c in zip(det["boxes"][i][:3], det["scores"][i][:3], det["classes"][i][:3]):
                ax.add_patch(patches.Rectangle(b[:2] * size - 0.5, *(b[2:] - b[:2]) * size, fill=False, color="red",
                                               lw=1.0))
                ax.text(b[0] * size, b[1] * size, f"{int(c)}:{float(s):.2f}", color="red", fontsize=6)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(labels[g], fontsize=8)
    fig.suptitle("SSDLite on each backbone: ground truth (green), top-3 detections (red)", fontsize=9)
    plots.save_figure(fig, path, bbox_inches="tight")
    plt.close(fig)
    return True


ABLATION = Ablation(
    name="detection_backbones",
    title="MobileNetV3 Table 6 at CPU scale — SSDLite on V1, V2, V3-Large (and its halved tail), V3-Small",
    paper_claim=(
        "V3 Table 6 (COCO test-dev, SSDLite at 320x320): V1 22.2, V2 22.1, V3-Large 22.0 and V3-Large with the "
        "channels between C4 and C5 halved 22.0 mAP, V3-Small 16.0 (its halved tail 16.1, 2.4 above V2-0.35's "
        "13.7). The paper's point is that V3-Large matches V1/V2 at 52%/22.5% fewer multiply-adds (0.62B against "
        "1.3B/0.80B), that halving the tail costs nothing at 0.51B, and that V3-Small is 6 points lower."),
    model="ssdlite",
    variants={g: {f"model_kwargs.{k}": v for k, v in kwargs.items()} for g, _, kwargs, *_ in BACKBONES},
    # Declared before the runs, in this order (the first pair is the --smoke pair). Metric: final COCO
    # AP@[.5:.95] on the embedded eval set (the paper's metric, pycocotools). V1 > V2 first: the
    # cheapest pair to compile is the smoke test's.
    # The paper's three "same mAP" statements are equality claims (a = b, see the verdict rule): the
    # limits below said so before the runs; the committed run first recorded them as orderings with
    # gaps +0.1 / +0.1 / 0.0, which labelled the halved tail's measured loss 'agrees'.
    claims=[_claim("v1", "v2", "Table 6: 22.2 vs 22.1", "="),
            _claim("v2", "v3-large", "Table 6, Sec. 6.3: near identical mAP", "="),
            _claim("v3-large", "v3-large-half", "Table 6: no loss", "="),
            _claim("v3-large", "v3-small", "Table 6")],
    # The classification proxy's splits and plateau rule, with detection's own data and recipe: Adam
    # 3e-3 (in 100-300-step pilots it beat Nesterov SGD 0.05, AP50 0.018 vs 0.003: the config's note),
    # constant after warm-up, EMA weights; the plateau on validation AP (half a point, from step 600).
    cpu_overrides={"model_kwargs.width": 0.35, "embedded_num_train": 2048, "embedded_num_validation": 256,
                   "embedded_num_eval": 1024, "eval_batch_size": 64, "embedded_noise": (0.02, 0.06),
                   "embedded_detection_classes": (0, 2, 6), "embedded_detection_max_objects": 2,
                   "embedded_detection_object_size": (0.3, 0.5), "optimizer": "adam", "learning_rate": 3e-3,
                   "grad_clip_norm": 0.0, "weight_decay": 0.0, "batch_size": 32, "plateau_min_value": 0.0},
    gpu_overrides={"model_kwargs.width": 1.0, "num_train_steps": 20_000, "eval_every_steps": 500,
                   "embedded_num_train": 20_000, "embedded_num_eval": 2000, "image_size": 128,
                   "embedded_detection_classes": (), "embedded_detection_max_objects": 4,
                   "embedded_detection_object_size": (0.15, 0.4)},
    pilots=("the note in configs/detection_embedded.py (100-300-step pilots, not kept as runs: Adam 3e-3 reached "
            "AP50 0.018 where Nesterov SGD 0.05 reached 0.003)."),
    runtime=("about 3-5 hours on 2 CPU cores (5 backbones x 5 seeds of batch 32 at 64x64, each to its plateau of "
             "validation AP; 600 steps took 51-129 s a run in the earlier sweep)"),
    limits=(
        "Table 6 is COCO at 320x320 after 100k+ steps; this is width 0.35 at 64x64 on three of the embedded "
        "shapes with 1-2 large objects per image. The C4 map is 4x4 and C5 2x2 at 64x64, so the detector resolves "
        "large objects only. The paper's 'same mAP' claims (V1 = V2 = V3-Large, and the halved tail's 'no loss') "
        f"are equality claims with a margin of {EQUAL_MARGIN:g} AP point declared before the runs: 'agrees' needs "
        "both one-sided tests to put the gap inside it."),
    labels={g: label for g, label, *_ in BACKBONES},
    extra=sizes_and_predictions,
    config=DETECTION_CONFIG,
    metric="eval_AP",
    metric_label="COCO AP",
    final_metric="test_AP",
    paper_data="COCO",
)

if __name__ == "__main__":
    cli.main_of(lambda argv: main(ABLATION, argv))
