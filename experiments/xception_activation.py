"""Xception Fig. 10 (Sec. 4.7): no activation vs ReLU vs ELU between depthwise and pointwise.

``python -m experiments.xception_activation`` (see ``--help`` for runtime and full-scale options).
"""
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mobilenet_jax import cli
from experiments import runs, stats
from experiments.ablation import Ablation, main
from experiments.stats import Claim


def elu_vs_relu(groups: Mapping[str, runs.GroupStats], configs: Mapping[str, Any], exp_dir: Path):
    """ELU against ReLU between depthwise and pointwise: measured, but no verdict (the paper's text
    states no ordering between them)."""
    if "elu" not in groups or "relu" not in groups:
        return [], []
    final, speed = (stats.mean_ci(stats.paired_differences(groups["elu"].by_seed(m), groups["relu"].by_seed(m)))
                    for m in ("final", "speed"))
    return [], [("ELU vs ReLU (measured, no claim)",
                 f"elu − relu: final accuracy {final.fmt()} pts, mean over the run {speed.fmt()} pts (paired by seed, "
                 f"95% t interval, n={final.n}). The paper tested both but its text does not order them, so no "
                 f"verdict is drawn.")]

ABLATION = Ablation(
    name="xception_activation",
    title="Xception Fig. 10 — activation between depthwise and pointwise",
    paper_claim=(
        "With no intermediate non-linearity between the depthwise and the pointwise convolution Xception converges "
        "faster and ends better than with ELU or ReLU there (Fig. 10, ImageNet); the paper suggests depth of the "
        "feature spaces matters: non-linearity helps deep, not shallow (1-channel) spaces."),
    model="xception",
    variants={
        "none": {"model_kwargs.separable_activation": "none"},
        "elu": {"model_kwargs.separable_activation": "elu"},
        "relu": {"model_kwargs.separable_activation": "relu"},
    },
    claims=[Claim("none", "elu", None, "Fig. 10: curves only"), Claim("none", "relu", None, "Fig. 10: curves only"),
            Claim("none", "elu", None, "Fig. 10: \"faster convergence\"", metric="speed"),
            Claim("none", "relu", None, "Fig. 10: \"faster convergence\"", metric="speed")],
    cpu_overrides={"model_kwargs": {"width": 0.25, "dropout_rate": 0.0, "bn_momentum": 0.9}, "image_size": 32},
    gpu_overrides={"model_kwargs": {"width": 1.0, "dropout_rate": 0.0, "bn_momentum": 0.9}, "image_size": 96},
    runtime=("about 1-1.5 hours on 2 CPU cores (3 variants x 5 seeds, Xception width 0.25 at 32x32, each to its "
             "plateau: about 0.2 s a step on 2 idle cores, 800-2,000 steps a run)"),
    limits=(
        "The paper's 'faster convergence' is a separate, declared speed claim (the mean of the validation curve "
        "over the steps every run trained: fixed budget by definition), never a fallback when the finals tie. "
        "The 'none' runs are shared with xception_residual's residual variant."),
    labels={"none": "no intermediate activation (paper)", "elu": "intermediate ELU", "relu": "intermediate ReLU"},
    extra=elu_vs_relu,
)

if __name__ == "__main__":
    cli.main_of(lambda argv: main(ABLATION, argv))
