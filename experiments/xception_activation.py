"""Xception Fig. 10 (Sec. 4.7): no activation vs ReLU vs ELU between depthwise and pointwise.

``python -m experiments.xception_activation`` (see ``--help`` for runtime and full-scale options).
"""
from mobilenet_jax import cli
from experiments.ablation import Ablation, main

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
    expect=[("none", "elu"), ("none", "relu")],
    cpu_overrides={"model_kwargs": {"width": 0.25, "dropout_rate": 0.0, "bn_momentum": 0.9},
                   "image_size": 32, "num_train_steps": 500},
    runtime="about 12-25 minutes on 2 CPU cores (3 variants x 2 seeds x 500 steps, Xception width 0.25 at 32x32; 25.6 min measured with two other jobs sharing the cores)",
    labels={"none": "no intermediate activation (paper)", "elu": "intermediate ELU", "relu": "intermediate ReLU"},
)

if __name__ == "__main__":
    cli.main_of(lambda argv: main(ABLATION, argv))
