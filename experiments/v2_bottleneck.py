"""MobileNetV2 Fig. 6a (Sec. 6.4): linear bottleneck vs ReLU6 in the bottleneck.

``python -m experiments.v2_bottleneck`` (see ``--help`` for runtime and full-scale options).
"""
from mobilenet_jax import cli
from experiments.ablation import Ablation, main

ABLATION = Ablation(
    name="v2_bottleneck",
    title="MobileNetV2 Fig. 6a — linear vs ReLU6 bottleneck",
    paper_claim=(
        "Linear bottlenecks beat a ReLU6 in the bottleneck (Fig. 6a, ImageNet top-1 over 7M steps): \"linear "
        "bottlenecks improve performance, providing support that non-linearity destroys information in "
        "low-dimensional space\" (Sec. 6.4); a non-linear bottleneck \"hurts the performance by several percent\" "
        "(Sec. 3.2). Only curves are published, no final numbers."),
    model="mobilenet_v2",
    variants={
        "linear": {"model_kwargs.bottleneck_activation": "linear"},
        "relu6": {"model_kwargs.bottleneck_activation": "relu6"},
    },
    expect=[("linear", "relu6")],
    cpu_overrides={"num_train_steps": 600},
    runtime="under 10 minutes on 2 CPU cores (2 variants x 2 seeds x 600 steps; 9.7 min measured with a second sweep sharing the cores)",
    labels={"linear": "linear bottleneck (paper)", "relu6": "ReLU6 in bottleneck"},
)

if __name__ == "__main__":
    cli.main_of(lambda argv: main(ABLATION, argv))
