"""Xception Fig. 9 (Sec. 4.7): with vs without residual connections.

``python -m experiments.xception_residual`` (see ``--help`` for runtime and full-scale options).
"""
from mobilenet_jax import cli
from experiments.ablation import Ablation, main

ABLATION = Ablation(
    name="xception_residual",
    title="Xception Fig. 9 — residual connections",
    paper_claim=(
        "Residual connections help Xception a lot: on ImageNet the version without them converges much more slowly "
        "and ends clearly lower (Fig. 9, Sec. 4.7), although the paper notes residuals are not required to build "
        "deep separable-convolution stacks."),
    model="xception",
    variants={"residual": {"model_kwargs.residual": True}, "no_residual": {"model_kwargs.residual": False}},
    expect=[("residual", "no_residual")],
    cpu_overrides={"model_kwargs": {"width": 0.25, "dropout_rate": 0.0, "bn_momentum": 0.9},
                   "image_size": 32, "num_train_steps": 500},
    runtime="about 8-13 minutes on 2 CPU cores (2 variants x 2 seeds x 500 steps, Xception width 0.25 at 32x32; 12.8 min measured with a second sweep sharing the cores)",
    labels={"residual": "Xception (residual, paper)", "no_residual": "Xception, no residual"},
)

if __name__ == "__main__":
    cli.main_of(lambda argv: main(ABLATION, argv))
