"""Paper facts, ablation switches, numerics and errors of the model zoo (no Keras)."""
from __future__ import annotations

import functools
import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mobilenet_jax
from mobilenet_jax import ModelConfigError, create_model
from mobilenet_jax.blocks import DepthwiseSeparable, InvertedResidual, SeparableConvBN
from mobilenet_jax.layers import hard_sigmoid, hard_swish, make_divisible, relu6
from mobilenet_jax.models import mobilenet_v1
from mobilenet_jax.sizes import (abstract_variables, count_leaves, count_madds, is_convolution, is_depthwise,
                                   iter_equations, jaxpr_madds, model_size)


def _jaxpr(model, resolution: int, batch: int = 2):
    variables = abstract_variables(model, resolution)
    x = jax.ShapeDtypeStruct((batch, resolution, resolution, 3), jnp.float32)
    return jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x).jaxpr


def residual_adds(model, resolution: int) -> list[tuple[int, ...]]:
    """Shapes of the additions that join two feature maps (not BatchNorm's bias adds,
    whose second operand is a broadcast vector)."""
    shapes = []
    for eqn in iter_equations(_jaxpr(model, resolution)):
        if eqn.primitive.name == "add":
            a, b = (v.aval.shape for v in eqn.invars)
            if a == b and len(a) == 4 and a[1] * a[2] > 1:
                shapes.append(a)
    return shapes


def _init_apply(model, resolution=32, batch=2, train=False, seed=0):
    x = jax.random.uniform(jax.random.key(seed), (batch, resolution, resolution, 3), minval=-1, maxval=1)
    variables = jax.jit(functools.partial(model.init, train=False))({"params": jax.random.key(1)}, x)
    return variables, x


def _apply(model, variables, x, **kwargs):
    """model.apply compiled once (eager op-by-op execution costs tens of seconds)."""
    return jax.jit(functools.partial(model.apply, **kwargs))(variables, x)


# ------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------


def test_hard_activations_match_their_definitions():
    x = jnp.linspace(-8, 8, 1601)
    np.testing.assert_allclose(relu6(x), np.minimum(np.maximum(x, 0), 6))
    np.testing.assert_allclose(hard_sigmoid(x), np.minimum(np.maximum(x + 3, 0), 6) / 6, atol=1e-7)
    np.testing.assert_allclose(hard_swish(x), x * np.minimum(np.maximum(x + 3, 0), 6) / 6, atol=1e-6)
    # h-swish approximates swish (V3 Fig. 6): same limits, close everywhere.
    assert float(jnp.max(jnp.abs(hard_swish(x) - nn.swish(x)))) < 0.15
    assert float(hard_swish(-3.0)) == 0.0 and float(hard_swish(3.0)) == 3.0


@pytest.mark.parametrize("value", [1, 3.5, 5.6, 8, 11.2, 12, 20, 44.8, 72 * 0.25, 100, 283.5, 1792])
def test_make_divisible_rounds_to_a_nearby_multiple_of_8(value):
    rounded = make_divisible(value)
    assert rounded % 8 == 0 and rounded >= 8
    assert rounded >= 0.9 * value  # never more than 10% down
    nearest = max(8, 8 * math.floor(value / 8 + 0.5))
    assert rounded in (nearest, nearest + 8)


# ------------------------------------------------------------------------------------------
# Paper facts
# ------------------------------------------------------------------------------------------


def test_v1_table_1_has_28_layers_and_a_7x7x1024_output():
    model = create_model("mobilenet_v1")
    convs = [e for e in iter_equations(_jaxpr(model, 224, batch=1)) if is_convolution(e)]
    assert len(convs) == 27  # 27 convs + the fully connected layer = 28 (Table 1)
    assert convs[-1].outvars[0].aval.shape == (1, 7, 7, 1024)
    depthwise = [e for e in convs if is_depthwise(e)]
    assert len(depthwise) == 13


def test_v1_full_conv_saves_what_equations_2_and_5_say():
    """Table 4: the separable network costs sum(Dk^2 M DF^2 + M N DF^2) where the full-conv
    network costs sum(Dk^2 M N DF^2) (Eqs. 2 and 5); the stem and classifier are shared."""
    separable = create_model("mobilenet_v1")
    full = create_model("mobilenet_v1", conv_type="full")
    size = 224 // 2
    in_ch = mobilenet_v1.STEM_FEATURES
    expected_saving = 0
    for out_ch, stride in separable.block_table():
        size //= stride
        expected_saving += 9 * in_ch * out_ch * size * size - (9 * in_ch * size * size + in_ch * out_ch * size * size)
        in_ch = out_ch
    assert count_madds(full, 224) - count_madds(separable, 224) == expected_saving
    # Table 4's figures: 4866M / 29.3M vs 569M / 4.2M.
    assert abs(count_madds(full, 224) / 4866e6 - 1) < 0.005
    assert abs(count_leaves(abstract_variables(full, 224)["params"]) / 29.3e6 - 1) < 0.005


def test_v1_shallow_removes_the_five_14x14x512_blocks():
    full, shallow = create_model("mobilenet_v1"), create_model("mobilenet_v1", shallow=True)
    assert len(full.block_table()) - len(shallow.block_table()) == 5
    # Each removed block: 3x3x512 depthwise + 512x512 pointwise at 14x14, two BNs of 512.
    per_block_params = 9 * 512 + 512 * 512 + 2 * 2 * 512
    per_block_madds = (9 * 512 + 512 * 512) * 14 * 14
    a, b = model_size(full, 224), model_size(shallow, 224)
    assert a.params - b.params == 5 * per_block_params
    assert a.madds - b.madds == 5 * per_block_madds
    assert abs(b.madds / 307e6 - 1) < 0.005 and abs(b.params / 2.9e6 - 1) < 0.01  # Table 5


def test_v1_resolution_multiplier_scales_madds_quadratically_and_keeps_params():
    sizes = {r: model_size(create_model("mobilenet_v1"), r) for r in (128, 224)}
    assert sizes[128].params == sizes[224].params
    # Everything but the classifier scales with rho^2 (Sec. 3.4).
    fc = 1024 * 1000
    ratio = (sizes[128].madds - fc) / (sizes[224].madds - fc)
    assert ratio == pytest.approx((128 / 224) ** 2, rel=1e-3)


def test_v2_last_conv_is_1280_unless_width_exceeds_one():
    assert create_model("mobilenet_v2", width=0.35).last_features == 1280
    assert create_model("mobilenet_v2", width=1.0).last_features == 1280
    assert create_model("mobilenet_v2", width=1.4).last_features == 1792


def test_v2_table_2_blocks():
    table = create_model("mobilenet_v2").block_table()
    assert len(table) == 17
    assert [out for _, out, _ in table] == [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
    assert sum(s == 2 for _, _, s in table) == 4
    assert table[0][0] == 32 and all(exp == 6 * prev for (exp, _, _), (_, prev, _) in zip(table[1:], table))


def test_v3_se_is_a_quarter_of_the_expansion_rounded_to_8():
    for name in ("mobilenet_v3_large", "mobilenet_v3_small"):
        for block in create_model(name).block_table():
            if block["se_features"] is not None:
                assert block["se_features"] == make_divisible(block["expanded_features"] / 4)
    large = create_model("mobilenet_v3_large").block_table()
    assert [b["expanded_features"] for b in large] == [16, 64, 72, 72, 120, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960]


@pytest.mark.parametrize("name,resolution", [("mobilenet_v2", 224), ("mobilenet_v3_large", 224), ("mobilenet_v3_small", 224), ("xception", 299)])
def test_papers_sizes(name, resolution):
    """Within the tolerances docs/papers.md documents (V3-L's count sits 1.1% under its 219M)."""
    paper = {
        "mobilenet_v2": (3.4e6, 300e6, 0.035, 0.005),
        "mobilenet_v3_large": (5.4e6, 219e6, 0.02, 0.012),
        "mobilenet_v3_small": (2.5e6, 56e6, 0.02, 0.01),
        "xception": (22_855_952, None, 0.0, None),
    }[name]
    size = model_size(create_model(name), resolution)
    assert abs(size.params / paper[0] - 1) <= paper[2]
    if paper[1] is not None:
        assert abs(size.madds / paper[1] - 1) <= paper[3]


# ------------------------------------------------------------------------------------------
# Ablation switches
# ------------------------------------------------------------------------------------------


def test_v2_shortcut_variants():
    kinds = {k: residual_adds(create_model("mobilenet_v2", width=0.5, shortcut=k), 64) for k in ("bottleneck", "expansion", "none")}
    assert kinds["none"] == []
    table = create_model("mobilenet_v2", width=0.5).block_table()
    stride1_same_width = [out for (exp, out, s), (_, prev, _) in zip(table[1:], table) if s == 1 and out == prev]
    assert sorted(s[-1] for s in kinds["bottleneck"]) == sorted(stride1_same_width)
    # Between expansions: same number of joins, but on the 6x wider expanded tensors.
    assert sorted(s[-1] for s in kinds["expansion"]) == sorted(6 * c for c in stride1_same_width)


def test_v2_bottleneck_activation_changes_only_the_projection():
    linear = create_model("mobilenet_v2", width=0.35, num_classes=5)
    relu = create_model("mobilenet_v2", width=0.35, num_classes=5, bottleneck_activation="relu6")
    variables, x = _init_apply(linear)
    _, state = _apply(relu, variables, x, capture_intermediates=True, mutable=["intermediates"])
    projected = state["intermediates"]["blocks_3"]["project"]["__call__"][0]
    assert float(projected.min()) >= 0.0  # ReLU6 in the bottleneck
    _, state = _apply(linear, variables, x, capture_intermediates=True, mutable=["intermediates"])
    assert float(state["intermediates"]["blocks_3"]["project"]["__call__"][0].min()) < 0.0


def test_xception_residual_switch_removes_every_shortcut():
    with_res = create_model("xception", width=0.25)
    without = create_model("xception", width=0.25, residual=False)
    assert len(residual_adds(with_res, 71)) == 12  # all 14 modules but the first and last
    assert residual_adds(without, 71) == []
    shortcut_convs = [("blocks_%d" % i) for i in (0, 1, 2, 11)]
    params = abstract_variables(without, 71)["params"]
    assert not any(name in params for name in [f"{b}/shortcut" for b in shortcut_convs])
    assert all("shortcut" not in params[b] for b in shortcut_convs)


@pytest.mark.parametrize("activation,primitive", [("elu", "expm1"), ("relu", "max")])
def test_xception_intermediate_activation_sits_in_every_separable_conv(activation, primitive):
    base = create_model("xception", width=0.25)
    variant = create_model("xception", width=0.25, separable_activation=activation)
    count = lambda m: sum(e.primitive.name == primitive for e in iter_equations(_jaxpr(m, 71)))  # noqa: E731
    n_separable = 3 * 2 + 8 * 3 + 2 + 2  # entry, middle, exit module, exit convs
    assert count(variant) - count(base) == n_separable
    assert count_leaves(abstract_variables(variant, 71)) == count_leaves(abstract_variables(base, 71))


def test_v3_hswish_placement():
    published = create_model("mobilenet_v3_large")
    acts = [b["activation"] for b in published.block_table()]
    assert acts == ["relu"] * 6 + ["hard_swish"] * 9  # Table 1: HS from the 80-channel stage
    assert published.outer_activation == "hard_swish"
    at112 = [b["activation"] for b in create_model("mobilenet_v3_large", hswish_from=112).block_table()]
    assert at112 == ["relu"] * 10 + ["hard_swish"] * 5
    everywhere = create_model("mobilenet_v3_large", hswish_from=16)
    assert {b["activation"] for b in everywhere.block_table()} == {"hard_swish"}
    relu = create_model("mobilenet_v3_large", hswish_from=None)
    assert {b["activation"] for b in relu.block_table()} == {"relu"} and relu.outer_activation == "relu"
    small = [b["activation"] for b in create_model("mobilenet_v3_small").block_table()]
    assert small == ["relu"] * 3 + ["hard_swish"] * 8  # Table 2


def test_v3_hswish_placement_changes_the_function():
    a = create_model("mobilenet_v3_small", width=0.75, num_classes=4)
    b = create_model("mobilenet_v3_small", width=0.75, num_classes=4, hswish_from=None)
    variables, x = _init_apply(a)
    assert not np.allclose(_apply(a, variables, x), _apply(b, variables, x))


def test_v3_squeeze_excite_switch_removes_exactly_the_se_modules():
    with_se = create_model("mobilenet_v3_large")
    without = create_model("mobilenet_v3_large", squeeze_excite=False)
    se_params = sum(2 * b["expanded_features"] * b["se_features"] + b["se_features"] + b["expanded_features"]
                    for b in with_se.block_table() if b["se_features"])
    assert model_size(with_se).params - model_size(without).params == se_params


# ------------------------------------------------------------------------------------------
# Numerics: dtype, train mode, blocks on their own
# ------------------------------------------------------------------------------------------


def test_bfloat16_compute_keeps_float32_params_and_logits():
    model = create_model("mobilenet_v2", width=0.35, num_classes=7, dtype=jnp.bfloat16)
    variables, x = _init_apply(model)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    conv_dtypes = {e.outvars[0].aval.dtype for e in iter_equations(_jaxpr(model, 32)) if is_convolution(e)}
    assert conv_dtypes == {jnp.dtype(jnp.bfloat16)}
    logits = _apply(model, variables, x)
    assert logits.dtype == jnp.float32 and logits.shape == (2, 7)
    f32 = _apply(create_model("mobilenet_v2", width=0.35, num_classes=7), variables, x)
    assert float(jnp.max(jnp.abs(logits - f32))) < 0.1 * float(jnp.max(jnp.abs(f32))) + 1e-2


def test_train_mode_updates_batch_stats_and_uses_dropout():
    model = create_model("mobilenet_v3_small", width=0.75, num_classes=3, dropout_rate=0.5)
    variables, x = _init_apply(model)
    train_step = jax.jit(lambda v, x, key: model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}))
    out1, state = train_step(variables, x, jax.random.key(0))
    out2, _ = train_step(variables, x, jax.random.key(1))
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], state["batch_stats"])
    assert all(jax.tree.leaves(changed))
    assert not np.allclose(out1, out2)  # different dropout masks
    np.testing.assert_array_equal(_apply(model, variables, x), _apply(model, variables, x))


def test_blocks_are_usable_on_their_own():
    x = jnp.ones((1, 8, 8, 16))
    ds = DepthwiseSeparable(32, strides=2)
    v = ds.init(jax.random.key(0), x)
    assert ds.apply(v, x).shape == (1, 4, 4, 32)
    assert v["params"]["depthwise"]["conv"]["kernel"].shape == (3, 3, 1, 16)
    ir = InvertedResidual(96, 16, kernel_size=5, se_features=24, activation="hard_swish")
    v = ir.init(jax.random.key(0), x)
    assert ir.apply(v, x).shape == (1, 8, 8, 16)
    assert v["params"]["squeeze_excite"]["reduce"]["kernel"].shape == (1, 1, 96, 24)
    sep = SeparableConvBN(24, intermediate_activation="elu")
    v = sep.init(jax.random.key(0), x)
    assert sep.apply(v, x).shape == (1, 8, 8, 24)
    assert v["params"]["pointwise"]["kernel"].shape == (1, 1, 16, 24)


def test_inverted_residual_shortcut_is_identity_at_zero_projection():
    """With the projection's BN scale and bias at 0, a stride-1 block is the identity."""
    block = InvertedResidual(48, 8)
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 8))
    v = block.init(jax.random.key(1), x)
    v = jax.tree_util.tree_map_with_path(
        lambda p, a: jnp.zeros_like(a) if "project" in str(p) and "bn" in str(p) and ("scale" in str(p) or "bias" in str(p)) else a, v)
    np.testing.assert_allclose(block.apply(v, x), x, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Errors: raised early, naming the problem
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,overrides,message",
    [
        ("mobilenet_v4", {}, "unknown model 'mobilenet_v4'"),
        ("mobilenet_v2", dict(widht=0.5), "no field(s) ['widht']"),
        ("mobilenet_v2", dict(width=0), "width must be a finite number > 0"),
        ("mobilenet_v2", dict(width=-1.0), "width must be a finite number > 0"),
        ("mobilenet_v2", dict(width=float("nan")), "width must be a finite number > 0"),
        ("mobilenet_v2", dict(width="1.0"), "width must be a finite number > 0"),
        ("mobilenet_v1", dict(width=0.01), "leaves a layer with no channels"),
        ("mobilenet_v2", dict(num_classes=0), "num_classes must be a positive int"),
        ("mobilenet_v2", dict(dropout_rate=1.0), "dropout_rate must be in [0, 1)"),
        ("mobilenet_v2", dict(shortcut="dense"), "shortcut must be one of"),
        ("mobilenet_v2", dict(dtype=jnp.int8), "dtype must be one of"),
        ("mobilenet_v3_large", dict(hswish_from=81), "hswish_from must be None"),
        ("xception", dict(separable_activation="gelu"), "separable_activation must be one of"),
        ("mobilenet_v1", dict(depth_multiplier=0), "depth_multiplier must be an int >= 1"),
    ],
)
def test_bad_model_settings_raise_clear_errors(name, overrides, message):
    with pytest.raises(ModelConfigError) as err:
        create_model(name, **overrides)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "name,shape,dtype,error,message",
    [
        ("mobilenet_v2", (2, 16, 16, 3), jnp.float32, ValueError, "at least 32x32"),
        ("xception", (2, 31, 40, 3), jnp.float32, ValueError, "at least 32x32"),
        ("mobilenet_v2", (32, 32, 3), jnp.float32, ValueError, "rank 4"),
        ("mobilenet_v2", (2, 3, 32, 32), jnp.float32, ValueError, "is the batch laid out NCHW?"),
        ("mobilenet_v3_small", (2, 32, 32, 3), jnp.uint8, TypeError, "x / 127.5 - 1"),
    ],
)
def test_bad_inputs_raise_before_compiling(name, shape, dtype, error, message):
    model = create_model(name, width=0.5)
    x = jax.ShapeDtypeStruct(shape, dtype)
    with pytest.raises(error) as err:  # raised while tracing shapes: nothing is compiled
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    assert message in str(err.value)


def test_registry_lists_models_and_fields():
    import mobilenet_jax.segmentation.models  # noqa: F401  (registers lraspp, deeplabv3 in any test order)

    assert mobilenet_jax.list_models() == ["deeplabv3", "lraspp", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large",
                                           "mobilenet_v3_small", "ssdlite", "xception"]
    fields = mobilenet_jax.model_fields("mobilenet_v2")
    assert {"num_classes", "width", "dtype", "shortcut", "bottleneck_activation"} <= set(fields)
    assert fields["shortcut"].default == "bottleneck" and fields["bottleneck_activation"].default == "linear"
    assert mobilenet_jax.model_fields("xception")["separable_activation"].default == "none"


# ------------------------------------------------------------------------------------------
# Summary CLI
# ------------------------------------------------------------------------------------------


def test_summary_json_reports_counts_from_the_models(capsys):
    from mobilenet_jax import summary

    assert summary.main(["--json", "--model", "mobilenet_v3_small"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["variant"] for r in rows} == {"paper", "minimalistic"}
    keys = {"model", "width", "resolution", "variant", "params", "batch_stats", "madds", "paper_params", "paper_madds"}
    for row in rows:
        assert keys <= set(row)
        model = create_model(row["model"], width=row["width"], minimalistic=row["variant"] == "minimalistic")
        assert row["params"] == model_size(model, row["resolution"]).params
    paper = next(r for r in rows if r["variant"] == "paper" and r["width"] == 1.0)
    assert paper["paper_madds"] == 56_000_000 and abs(paper["madds"] / paper["paper_madds"] - 1) < 0.01


def test_jaxpr_madds_counts_a_single_dense_layer():
    dense = nn.Dense(10)
    v = dense.init(jax.random.key(0), jnp.ones((1, 7)))
    assert jaxpr_madds(jax.make_jaxpr(dense.apply)(v, jnp.ones((1, 7))).jaxpr) == 70


@pytest.mark.parametrize("k,strides,padding", [(3, 1, "SAME"), (3, 2, "SAME"), (5, 2, "SAME"),
                                               (3, 2, ((0, 1), (0, 1))), (3, 1, "VALID"), (5, 1, "SAME")])
def test_depthwise_conv2d_equals_xla_grouped_convolution(k, strides, padding):
    """The shifted multiply-add formulation computes the grouped convolution, forward and
    gradients (odd sizes exercise the 'SAME' stride-2 asymmetric padding)."""
    from mobilenet_jax.layers import depthwise_conv2d

    rng = np.random.default_rng(k * 10 + strides)
    x = jnp.asarray(rng.standard_normal((2, 11, 10, 6), np.float32))
    w = jnp.asarray(rng.standard_normal((k, k, 1, 6), np.float32))
    grouped = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
        x, w, (strides, strides), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6)
    shifted = lambda x, w: depthwise_conv2d(x, w, strides=strides, padding=padding)  # noqa: E731
    np.testing.assert_allclose(shifted(x, w), grouped(x, w), rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731
    for got, want in zip(jax.grad(loss(shifted), (0, 1))(x, w), jax.grad(loss(grouped), (0, 1))(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="depthwise kernel"):
        depthwise_conv2d(x, w[:, :, :, :5])
