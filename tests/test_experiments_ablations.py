"""The training-ablation scripts: every variant builds a valid trainer config and a model that takes
its image size; verdict logic; every script end to end at smoke scale."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import ablation, detection_backbones, runs, stats, v1_full_conv, v1_tradeoffs, v2_bottleneck
from experiments import segmentation_heads, v2_bottleneck_width, v2_shortcut
from experiments import v3_nonlinearity, xception_activation, xception_residual

# Run end to end at smoke scale: one script per family of variants (V2's switches, V1's resolutions);
# xception_activation runs end to end in the demo's test, detection_backbones and segmentation_heads in
# their own. The other scripts go through the same driver with other Ablation data: their variants are
# built, validated and compiled abstractly by test_every_variant_is_a_valid_config.
SCRIPTS = (v2_bottleneck, v1_tradeoffs)
MORE_SCRIPTS = (v2_shortcut, xception_residual, xception_activation, v3_nonlinearity, v1_full_conv,
                v2_bottleneck_width, detection_backbones, segmentation_heads)


@pytest.mark.parametrize("script", SCRIPTS + MORE_SCRIPTS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_every_variant_is_a_valid_config(script):
    from mobilenet_jax import create_model
    from mobilenet_jax.train import validate_config

    ab = script.ABLATION
    configs = ablation.build_configs(ab, ab.config, {**ablation.CPU_OVERRIDES, **ab.cpu_overrides})
    assert list(configs) == list(ab.variants)
    decided = [(b, w) for b, w in ab.expect if b in configs and w in configs]  # others: about stored runs only
    assert ab.expect[0] in decided and len({g for pair in decided for g in pair}) >= 2
    for group, config in configs.items():
        validate_config(config, num_devices=1)
        model = create_model(config.model, num_classes=10, **dict(config.model_kwargs))
        x = jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 3), jnp.float32)
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)  # the model takes this input size
        for key, value in ab.variants[group].items():  # the switch really reached the model / config
            if key.startswith("model_kwargs."):
                assert getattr(model, key.split(".", 1)[1]) == value, (group, key)
            else:
                assert config[key] == value, (group, key)


def test_variants_differ_only_in_their_switch():
    configs = ablation.build_configs(v2_shortcut.ABLATION, ablation.EMBEDDED_CONFIG, {})
    a, b = (c.to_dict() for c in (configs["bottleneck"], configs["none"]))
    assert {k for k in a if a[k] != b[k]} == {"model_kwargs"}
    assert {k for k in a["model_kwargs"] if a["model_kwargs"][k] != b["model_kwargs"][k]} == {"shortcut"}


def test_every_claim_names_two_variants_and_the_verdict_counts_them():
    for script in SCRIPTS + MORE_SCRIPTS:
        ab = script.ABLATION
        assert ab.claims and len(ab.default_seeds) >= 5, script.__name__
        declared = {g for c in ab.claims for g in (c.better, c.worse)}
        assert {ab.claims[0].better, ab.claims[0].worse} <= set(ab.variants), script.__name__  # the smoke pair runs
        assert declared & set(ab.variants), script.__name__
    f = np.array([0.80, 0.81, 0.82, 0.80, 0.83])
    groups = {g: runs.GroupStats(g, np.array([1]), f[:1], f[:1], f[:1], f + d, tuple(range(5)), f + d, plateau)
              for g, d, plateau in (("a", 0.2, (100,) * 5), ("b", 0.0, (200,) * 5), ("c", 0.0, (-1,) * 5))}
    head, verdicts = ablation.verdict(groups, [stats.Claim("a", "b", (20.0, 20.0)), stats.Claim("b", "c"),
                                               stats.Claim("a", "missing")])
    assert [v.outcome for v in verdicts] == ["agrees", "inconclusive"]  # a claim whose variant did not run is left out
    assert head == "1 agrees, 1 inconclusive; size vs the paper: 1 consistent"
    # every run of a and b stopped at its plateau; c ran its budget
    assert [v.budget for v in verdicts] == ["plateau", "fixed budget"]
    assert [v.p_holm for v in verdicts] == pytest.approx(stats.holm([v.p for v in verdicts]))
    assert [v.holm_outcome for v in verdicts] == ["agrees", "inconclusive"]
    table = ablation.verdict_table(verdicts).splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert "p (Holm)" in header and "Holm verdict" in header and "runs" in header
    row = dict(zip(header, (c.strip() for c in table[2].strip("|").split("|"))))
    assert row["runs"] == "plateau" and row["Holm verdict"] == "agrees" and row["verdict"] == "agrees"
    records = ablation.verdict_records(verdicts)
    assert records[0]["budget"] == "plateau" and records[0]["holm_outcome"] == "agrees"
    assert records[0]["p_holm"] == pytest.approx(verdicts[0].p_holm)
    # an equality claim's row names its margin
    same = ablation.verdict(groups, [stats.Claim("b", "c", relation="=", margin=1.0)])[1]
    assert same[0].outcome == "agrees" and "b = c ± 1" in ablation.verdict_table(same)
    speed = ablation.verdict(groups, [stats.Claim("a", "b", metric="speed")])[1]
    assert speed[0].budget == "fixed budget"  # a speed claim is a fixed-budget claim by definition


@pytest.mark.parametrize("script", SCRIPTS + MORE_SCRIPTS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_claims_are_scored_on_the_held_out_split_of_the_monitored_metric(script):
    """The monitored curve is the validation split's ``metric``; the claims' value is the same quantity
    on the test split (the trainer logs it as test_<key>), never a key the runs do not have."""
    ab = script.ABLATION
    split, _, key = ab.metric.partition("_")
    assert split == "eval" and ab.final_metric == f"test_{key}"
    configs = ablation.build_configs(ab, ab.config, {**ablation.CPU_OVERRIDES, **ab.cpu_overrides})
    assert all(c.test_split and c.test_split != c.eval_split for c in configs.values())


def test_v1_madds_follow_the_paper_ordering():
    """At the paper's scale: Table 4's full conv costs ~8.6x separable, Table 5's shallow net and
    the thinner 0.75 net cost about the same; the CPU scale keeps the grid's orderings."""
    ab = v1_tradeoffs.ABLATION
    full = ablation.build_configs(
        dataclasses.replace(ab, variants=ab.full_scale_variants), ablation.EMBEDDED_CONFIG, {})
    m = {g: v1_tradeoffs.madds_of(full[g]) for g in ("w1.0-r224", "full-conv", "shallow", "w0.75-r224")}
    assert 7.0 < m["full-conv"] / m["w1.0-r224"] < 10.0
    assert m["shallow"] < m["w1.0-r224"] and 0.8 < m["shallow"] / m["w0.75-r224"] < 1.25
    assert {(c.better, c.worse) for c in ab.full_scale_claims} >= {("full-conv", "w1.0-r224"), ("w0.75-r224", "shallow")}
    cpu = ablation.build_configs(ab, ablation.EMBEDDED_CONFIG, {**ablation.CPU_OVERRIDES, **ab.cpu_overrides})
    assert (cpu["w0.5-r32"].model_kwargs["width"], cpu["w0.5-r32"].image_size) == (0.5, 32)
    cpu_madds = [v1_tradeoffs.madds_of(cpu[f"w{w}-r32"]) for w in v1_tradeoffs.CPU_WIDTHS]
    assert cpu_madds == sorted(cpu_madds, reverse=True)
    # Table 4 at CPU scale runs at the reference width (0.5 stands for the paper's 1.0), not the narrowest
    full_conv = v1_full_conv.ABLATION
    assert full_conv.variants["full-conv"]["model_kwargs.width"] == v1_tradeoffs.CPU_WIDTHS[0]
    assert full_conv.claims[0].paper_gap == (1.1, 1.1)


def test_full_scale_runs_use_the_papers_variants():
    ab = v1_tradeoffs.ABLATION
    assert ablation.scaled(ab, cpu_scale=True) is ab
    full = ablation.scaled(ab, cpu_scale=False)
    assert "w1.0-r224" in full.variants and "w0.5-r56" not in full.variants
    assert all(g in full.variants for pair in full.expect for g in pair)
    assert ablation.scaled(v2_shortcut.ABLATION, cpu_scale=False) is v2_shortcut.ABLATION


def _between(report: str) -> str:
    """A report's verdicts, tables and caveats (from the verdicts to the setup)."""
    return report.split("## Verdicts")[1].split("## Setup")[0]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_smoke_end_to_end(script, tmp_path):
    ab = script.ABLATION
    report = ablation.main(ab, ["--smoke", "--out", str(tmp_path)])
    out = tmp_path / f"{ab.name}_smoke"
    assert report == out / "report.md" and (out / "accuracy_vs_steps.png").exists()
    rows = runs.read_csv(out / "summary.csv")
    assert [r["group"] for r in rows] == list(ab.expect[0])
    assert all(0.0 <= float(r[f"{ab.final_metric}_mean"]) <= 1.0 for r in rows) and ab.final_metric == "test_accuracy"
    assert all((out / "runs" / f"{group}-s0" / "final.json").exists() for group in ab.expect[0])
    text = report.read_text()
    assert ab.paper_claim[:40] in text and "accuracy_vs_steps.png" in text
    assert "## Verdicts" in text and "What this run can and cannot show" in text
    verdicts = runs.read_json(out / "verdicts.json")
    assert [v["outcome"] for v in verdicts] == ["inconclusive"]  # one seed: never a verdict without an interval
    assert [v["holm_outcome"] for v in verdicts] == ["inconclusive"] and verdicts[0]["n"] == 1
    # the smoke budget (4 steps, evaluations at 2 and 4) is too short for the plateau rule's 4 evaluations
    assert verdicts[0]["budget"] == "fixed budget"
    for group in ab.expect[0]:
        final = runs.read_json(out / "runs" / f"{group}-s0" / "final.json")
        assert final["summary"]["plateau_step"] == -1 and "test_accuracy" in final["summary"]
    verdict_section = text.split("## Verdicts")[1].split("##")[0]
    assert "Holm verdict" in verdict_section and "| runs |" in verdict_section
    assert "| fixed budget |" in verdict_section
    if script is v2_bottleneck:  # the report rebuilt from the stored runs, no training
        before = (out / "runs" / f"{ab.claims[0].better}-s0" / "final.json").read_text()
        verdicts_before = (out / "verdicts.json").read_text()
        rebuilt = ablation.main(ab, ["--smoke", "--from-runs", "--out", str(tmp_path)]).read_text()
        assert "rebuilt from the stored runs" in rebuilt and _between(rebuilt) == _between(text)
        assert (out / "verdicts.json").read_text() == verdicts_before
        assert (out / "runs" / f"{ab.claims[0].better}-s0" / "final.json").read_text() == before


def test_demo_writes_both_experiments_and_says_where_the_figures_are(tmp_path, capsys):
    from experiments import demo

    page = demo.main(["--out", str(tmp_path), "--smoke"])
    text = page.read_text()
    assert "relu_manifold/" in text and "xception_activation_smoke/" in text
    printed = capsys.readouterr().out
    for png in ("relu_manifold/figure1_relu.png", "xception_activation_smoke/accuracy_vs_steps.png"):
        assert (tmp_path / png).exists() and png in printed


def test_detection_backbones_smoke_reports_ap_sizes_and_predictions(tmp_path):
    """V3 Table 6 through the ablation driver: COCO AP is the declared metric, the report adds the
    detectors' sizes at 320 beside the paper's and draws each backbone's detections."""
    ab = detection_backbones.ABLATION
    assert ab.metric == "eval_AP" and ab.claims[0].quantity == "COCO AP"
    report = ablation.main(ab, ["--smoke", "--out", str(tmp_path)])
    out = tmp_path / "detection_backbones_smoke"
    rows = runs.read_csv(out / "summary.csv")
    assert [r["group"] for r in rows] == ["v1", "v2"]
    assert all(0.0 <= float(r[f"{ab.final_metric}_mean"]) <= 1.0 for r in rows)
    final = runs.read_json(out / "runs" / "v2-s0" / "final.json")
    assert final["metric"] == "eval_AP" and final["config"]["model"] == "ssdlite"
    assert (out / "eval_AP_vs_steps.png").exists() and (out / "predictions.png").exists()
    text = report.read_text()
    section = text.split("## Table 6 columns")[1]
    # Sizes at 320 with 90 classes beside V3 Table 6's (V1 5.1M / 1.3B, V2 4.3M / 0.80B; the
    # differences are explained in the report and checked in tests/test_detection_sizes.py).
    assert "| V1 | 5.21M | 5.10M | 1.322B | 1.30B | 22.2 |" in section
    assert "| V2 | 4.45M | 4.30M | 0.804B | 0.80B | 22.1 |" in section
    assert "final COCO AP (x100)" in text and "binomial" not in text.split("## Final COCO AP")[1].split("##")[0]
    assert [v["outcome"] for v in runs.read_json(out / "verdicts.json")] == ["inconclusive"]


def test_segmentation_heads_smoke_reports_miou_sizes_and_masks(tmp_path):
    """V3 Sec. 6.4 through the ablation driver: mean IoU is the declared metric, the segmentation
    task trains both LR-ASPP networks, and the report adds the sizes at Cityscapes' 1024x2048 and
    each network's predicted masks."""
    from experiments import segmentation_heads

    ab = segmentation_heads.ABLATION
    assert ab.metric == "eval_mean_iou" and ab.claims[0].quantity == "mIoU"
    assert [c.margin for c in ab.claims if c.relation == "="] == [segmentation_heads.EQUAL_MARGIN] * 2
    report = ablation.main(ab, ["--smoke", "--out", str(tmp_path)])
    out = tmp_path / "segmentation_heads_smoke"
    rows = runs.read_csv(out / "summary.csv")
    assert [r["group"] for r in rows] == ["v3-large", "v3-small"]
    assert all(0.0 <= float(r[f"{ab.final_metric}_mean"]) <= 1.0 for r in rows)
    final = runs.read_json(out / "runs" / "v3-small-s0" / "final.json")
    assert final["metric"] == "eval_mean_iou" and final["config"]["model"] == "lraspp"
    assert "test_mean_iou" in final["summary"] and "test_pixel_accuracy" in final["summary"]
    assert (out / "eval_mean_iou_vs_steps.png").exists() and (out / "predictions.png").exists()
    text = report.read_text()
    sizes = text.split("## Sizes")[1]
    from mobilenet_jax.models import create_model
    from mobilenet_jax.sizes import model_size

    small = model_size(create_model("lraspp", backbone="mobilenet_v3_small", num_classes=19), (1024, 2048))
    assert f"| {(small.params - small.batch_stats) / 1e6:.3f}M | {small.madds / 1e9:.2f}B |" in sizes
    assert "points below mean IoU's ceiling" in text and "binomial" not in text.split("## Final mean IoU")[1]
    assert "seed 0's final state" in text
    assert [v["outcome"] for v in runs.read_json(out / "verdicts.json")] == ["inconclusive"]


def test_segmentation_masks_come_from_the_smallest_seed_every_network_has_checkpoints_for(tmp_path):
    """Checkpoints are not committed: after a clone and a rerun of some seeds, the masks figure
    takes one seed for every row, the smallest that all networks still have."""
    from types import SimpleNamespace

    from experiments.segmentation_heads import _checkpointed_seed

    groups = {"a": SimpleNamespace(seeds=(0, 1, 2)), "b": SimpleNamespace(seeds=(0, 1, 2))}
    for run in ("a-s0", "a-s1", "a-s2", "b-s1", "b-s2"):
        (tmp_path / "runs" / run / "checkpoints").mkdir(parents=True)
    assert _checkpointed_seed(tmp_path, ["a", "b"], groups) == 1
    (tmp_path / "runs" / "b-s1" / "checkpoints").rmdir()
    assert _checkpointed_seed(tmp_path, ["a", "b"], groups) == 2
    (tmp_path / "runs" / "a-s2" / "checkpoints").rmdir()
    with pytest.raises(FileNotFoundError, match="no seed of \\[0, 1, 2\\]"):
        _checkpointed_seed(tmp_path, ["a", "b"], groups)


def test_a_sweep_with_one_variant_finished_says_which_are_missing():
    f = np.array([0.8])
    groups = {"a": runs.GroupStats("a", np.array([1]), f, f, f, f, (0,), f, (100,))}
    head, verdicts = ablation.verdict(groups, [stats.Claim("a", "b"), stats.Claim("a", "c")])
    assert verdicts == [] and head == "no claim scored yet: no finished run of b, c"


def test_a_claim_whose_variants_share_no_finished_seed_is_left_out_until_they_do():
    """A sweep under way (two processes from opposite ends): b finished seed 4 only, a and c seed 0."""
    def group(name, seeds, value):
        f = np.full(len(seeds), value)
        return runs.GroupStats(name, np.array([1]), f[:1], f[:1], f[:1], f, tuple(seeds), f, (100,) * len(seeds))
    groups = {"a": group("a", [0], 0.8), "b": group("b", [4], 0.7), "c": group("c", [0, 4], 0.6)}
    head, verdicts = ablation.verdict(groups, [stats.Claim("a", "b"), stats.Claim("a", "c")])
    assert [v.claim.name for v in verdicts] == [stats.Claim("a", "c").name] and verdicts[0].gap.n == 1
    head, verdicts = ablation.verdict(groups, [stats.Claim("a", "b")])
    assert verdicts == [] and head == "no claim scored yet: no claim's two variants share a finished seed"


def test_the_differs_in_column_names_only_keys_a_variant_sets():
    """A key only some variants set is shown for those (None there is a value: V3's ReLU-everywhere
    hswish_from=None), never as None for the variants that lack it."""
    configs = {"relu": {"model": "v3", "model_kwargs": {"hswish_from": None}},
               "full": {"model": "v1", "model_kwargs": {"conv_type": "full"}},
               "sep": {"model": "v1", "model_kwargs": {}}}
    assert ablation._variant_overrides(configs) == {
        "relu": {"model": "v3", "model_kwargs.hswish_from": None},
        "full": {"model": "v1", "model_kwargs.conv_type": "full"}, "sep": {"model": "v1"}}


def test_a_runs_summary_keeps_the_plateau_rules_reduce_steps_and_drops_the_state():
    result = {"state": object(), "step": 40, "preempted": False, "plateau_step": 30,
              "plateau_reduced_at": [20], "eval_mean_iou": 0.5, "weights": np.zeros(3), "pairs": [(1, 2)]}
    summary = ablation.run_summary(result)
    assert summary == {"step": 40, "preempted": False, "plateau_step": 30, "plateau_reduced_at": [20],
                       "eval_mean_iou": 0.5}


@pytest.mark.parametrize("script", SCRIPTS + MORE_SCRIPTS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_the_pilots_a_report_cites_are_its_own_and_committed(script):
    """A task's report cites the pilots that chose its recipe: the segmentation and detection
    sweeps do not reuse the classification proxy's text, and a cited pilots folder exists."""
    import re

    ab = script.ABLATION
    default = ablation.Ablation.__dataclass_fields__["pilots"].default
    assert (ab.pilots == default) == (ab.config == ablation.EMBEDDED_CONFIG)
    for pattern in re.findall(r"`(results/recipe_pilots/[^`]*)`", ab.pilots):
        assert list(runs.REPO_ROOT.glob(pattern.rstrip("/"))), pattern
