"""Xception Fig. 9 (Sec. 4.7): with vs without residual connections.

``python -m experiments.xception_residual`` (see ``--help`` for runtime and full-scale options).
"""
from mobilenet_jax import cli
from experiments.ablation import Ablation, main
from experiments.stats import Claim

ABLATION = Ablation(
    name="xception_residual",
    title="Xception Fig. 9 — residual connections",
    paper_claim=(
        "Residual connections help Xception a lot: on ImageNet the version without them converges much more slowly "
        "and ends clearly lower (Fig. 9, Sec. 4.7), although the paper notes residuals are not required to build "
        "deep separable-convolution stacks."),
    model="xception",
    variants={"residual": {"model_kwargs.residual": True}, "no_residual": {"model_kwargs.residual": False}},
    claims=[Claim("residual", "no_residual", None, "Fig. 9: curves only"),
            Claim("residual", "no_residual", None, "Fig. 9: \"speed\" of convergence", metric="speed")],
    cpu_overrides={"model_kwargs": {"width": 0.25, "dropout_rate": 0.0, "bn_momentum": 0.9}, "image_size": 32},
    gpu_overrides={"model_kwargs": {"width": 1.0, "dropout_rate": 0.0, "bn_momentum": 0.9}, "image_size": 96},
    runtime=("about 40-60 minutes on 2 CPU cores (2 variants x 5 seeds, Xception width 0.25 at 32x32, each to its "
             "plateau; the residual runs are xception_activation's 'none' runs, shared when those exist)"),
    limits=(
        "The paper gives curves only, so no size can be compared. The residual network is xception_activation's "
        "'none' variant: its runs are shared between the two reports (each run's final.json says so). The "
        "non-residual network trains with the residual one's optimizer settings, which the paper itself calls "
        "possibly 'uncharitable'. The speed claim compares the validation curves over the steps every run "
        "trained: a fixed-budget claim by definition."),
    labels={"residual": "Xception (residual, paper)", "no_residual": "Xception, no residual"},
)

if __name__ == "__main__":
    cli.main_of(lambda argv: main(ABLATION, argv))
