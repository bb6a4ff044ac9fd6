"""The fast paths of the layers: each backend gets its own form of the depthwise convolution
and of BatchNorm's statistics, every form computes the same function, and BatchNorm's custom
backward equals autodiff's, on one device and across replicas under pmap."""
import re
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from mobilenet_jax import create_model
from mobilenet_jax.blocks import InvertedResidual
from mobilenet_jax.layers import (
    BatchNorm, batch_moments, batch_norm_train, depthwise_conv2d, moments_one_pass, moments_two_pass,
)
from mobilenet_jax.models.registry import ModelConfigError

AXES = (0, 1, 2)


def lowered_text(fn, *shapes, platform: str) -> str:
    """StableHLO (with source locations) of `fn` lowered for `platform`: no such device is
    needed to lower for it."""
    args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
    return export.export(jax.jit(fn), platforms=[platform])(*args).mlir_module()


@pytest.mark.parametrize("platform,grouped", [("cpu", False), ("cuda", True), ("rocm", True), ("tpu", True)])
def test_auto_depthwise_is_grouped_convolution_on_accelerators_and_shifted_on_cpu(platform, grouped):
    text = lowered_text(lambda x, k: depthwise_conv2d(x, k, strides=2), (2, 9, 9, 5), (3, 3, 1, 5),
                        platform=platform)
    assert ("feature_group_count = 5" in text) == grouped
    assert ("_shifted_depthwise" in text) == (not grouped)  # source locations name the form


@pytest.mark.parametrize("impl", ["shifted", "grouped"])
def test_forced_depthwise_form_is_lowered_on_every_platform(impl):
    for platform in ("cpu", "cuda"):
        text = lowered_text(lambda x, k: depthwise_conv2d(x, k, impl=impl), (1, 6, 6, 4), (3, 3, 1, 4),
                            platform=platform)
        assert ("feature_group_count = 4" in text) == (impl == "grouped")


def zero_placeholders(stablehlo: str) -> int:
    """Activation-sized (rank-4) zero-filled tensors that a region or function returns: the
    placeholders a branch of a differentiated `lax.platform_dependent` returns for the saved
    values of the other branches."""
    count = 0
    for func in stablehlo.split("func.func")[1:]:
        scalars = set(re.findall(r"(%[\w#.]+) = stablehlo.constant dense<0.0+e\+00> : tensor<\w+>", func))
        zeros = {m.group(1) for m in re.finditer(
            r"(%[\w#.]+) = stablehlo.broadcast_in_dim (%[\w#.]+), dims = \[\] : \(tensor<\w+>\) -> "
            r"tensor<\d+x\d+x\d+x\d+x\w+>", func) if m.group(2) in scalars}
        zeros |= set(re.findall(r"(%[\w#.]+) = stablehlo.constant dense<0.0+e\+00> : tensor<\d+x\d+x\d+x\d+x\w+>", func))
        for returned in re.findall(r"(?:stablehlo|func)\.?return ([^:]*)", func):
            count += sum(name.strip() in zeros for name in returned.split(","))
    return count


def _train_grad_lowered(depthwise, platform: str) -> str:
    """StableHLO of forward + gradient of a training-mode MobileNetV2 0.35 (batch 8, 64x64)
    whose depthwise convolutions are `depthwise(x, kernel, strides, padding, impl)`."""
    model = create_model("mobilenet_v2", width=0.35, num_classes=10, dropout_rate=0.0)
    x = jnp.zeros((8, 64, 64, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))

    def loss(params, batch_stats, x):
        y, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                 mutable=["batch_stats"])
        return jnp.sum(y), updates

    with mock.patch("mobilenet_jax.layers.depthwise_conv2d", depthwise):
        traced = jax.jit(jax.grad(loss, has_aux=True)).trace(variables["params"], variables["batch_stats"], x)
    return traced.lower(lowering_platforms=(platform,)).as_text()


def test_train_gradient_lowered_for_cuda_carries_no_zero_placeholders():
    """DESIGN.md: the form is chosen inside a custom VJP per pass. Lowered for CUDA, the
    gradient of a training-mode V2 returns no zero-filled activation-sized tensors from any
    branch; differentiating through `lax.platform_dependent` directly (the previous design,
    rebuilt here) returns one per saved value of the shifted form."""
    import functools as ft

    from mobilenet_jax import layers

    def through_platform_dependent(x, kernel, strides=1, padding="SAME", impl="auto", dilation=1):
        k = (kernel.shape[0] - 1) * dilation + 1
        pads = jax.lax.padtype_to_pads(x.shape[1:3], (k, k), (strides, strides), padding)
        forms = dict(strides=strides, pads=pads, dilation=dilation)
        return jax.lax.platform_dependent(
            x, kernel, cpu=ft.partial(layers._shifted_depthwise, **forms),
            default=ft.partial(layers._grouped_depthwise, **forms))

    assert zero_placeholders(_train_grad_lowered(layers.depthwise_conv2d, "cuda")) == 0
    assert zero_placeholders(_train_grad_lowered(through_platform_dependent, "cuda")) > 50


@pytest.mark.parametrize("platform,grouped", [("cpu", False), ("cuda", True)])
def test_depthwise_backward_takes_the_target_form(platform, grouped):
    """The backward pass alone (a VJP given the cotangent) is the grouped convolution's
    gradient on CUDA and shifted multiply-adds on the CPU."""
    def pullback(x, k, dy):
        return jax.vjp(lambda x, k: depthwise_conv2d(x, k, strides=2), x, k)[1](dy)

    text = lowered_text(pullback, (2, 9, 9, 5), (3, 3, 1, 5), (2, 5, 5, 5), platform=platform)
    assert ("stablehlo.convolution" in text) == grouped
    assert ("stablehlo.slice" in text) == (not grouped)  # the shifted form's taps


@pytest.mark.parametrize("shape,fields", [
    ((4, 11, 11, 8), dict(out_features=16, strides=2)),  # stride 2
    ((2, 9, 9, 8), dict(out_features=8, dilation=2)),  # atrous (output stride 16 / 8), with a shortcut
], ids=["strided", "dilated"])
def test_block_computes_the_same_with_either_depthwise_form(shape, fields):
    """An inverted residual (k=5, squeeze-excite; strided, or dilated) with either form: same
    outputs, batch statistics and gradients in training mode."""
    x = jax.random.normal(jax.random.key(0), shape)
    blocks = {impl: InvertedResidual(24, kernel_size=5, se_features=8, depthwise_impl=impl, **fields)
              for impl in ("shifted", "grouped")}
    v = blocks["shifted"].init(jax.random.key(1), x, train=False)

    def loss(block, params):
        y, upd = block.apply({"params": params, "batch_stats": v["batch_stats"]}, x, train=True,
                             mutable=["batch_stats"])
        return jnp.sum(jnp.sin(y)), upd

    (l1, u1), g1 = jax.value_and_grad(lambda p: loss(blocks["shifted"], p), has_aux=True)(v["params"])
    (l2, u2), g2 = jax.value_and_grad(lambda p: loss(blocks["grouped"], p), has_aux=True)(v["params"])
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for a, b in zip(jax.tree.leaves((u1, g1)), jax.tree.leaves((u2, g2))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k,strides,dilation,padding", [
    (3, 1, 2, "SAME"), (5, 1, 2, "SAME"), (3, 1, 4, "SAME"), (3, 2, 2, "SAME"), (3, 1, 2, "VALID"),
    (3, 1, 3, ((1, 2), (3, 0))),
])
def test_dilated_depthwise_forms_equal_xla_atrous_convolution(k, strides, dilation, padding):
    """Atrous depthwise convolution (the backbones' output stride 16 / 8): both forms, forced,
    equal XLA's grouped convolution with `rhs_dilation`, values and gradients; 'SAME' pads for
    the (k - 1) * d + 1 window, so the output keeps the input's size at stride 1."""
    rng = np.random.default_rng(100 * k + 10 * dilation + strides)
    x = jnp.asarray(rng.standard_normal((2, 13, 11, 6), np.float32))
    w = jnp.asarray(rng.standard_normal((k, k, 1, 6), np.float32))
    want_fn = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
        x, w, (strides, strides), padding, rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6)
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731
    want, want_grads = want_fn(x, w), jax.grad(loss(want_fn), (0, 1))(x, w)
    if padding == "SAME" and strides == 1:
        assert want.shape == x.shape
    for impl in ("shifted", "grouped"):
        got_fn = lambda x, w: depthwise_conv2d(x, w, strides=strides, padding=padding, impl=impl,  # noqa: E731
                                               dilation=dilation)
        np.testing.assert_allclose(got_fn(x, w), want, rtol=1e-5, atol=1e-5)
        for got, ref in zip(jax.grad(loss(got_fn), (0, 1))(x, w), want_grads):
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="dilation"):
        depthwise_conv2d(x, w, dilation=0)


def test_depthwise_impl_is_a_validated_model_field():
    assert create_model("mobilenet_v2", width=0.35, depthwise_impl="grouped").depthwise_impl == "grouped"
    with pytest.raises(ModelConfigError, match="depthwise_impl"):
        create_model("mobilenet_v2", depthwise_impl="winograd")
    with pytest.raises(ValueError, match="depthwise impl"):
        depthwise_conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 1, 2)), impl="fft")


# --------------------------------------------------------------------------------------------
# BatchNorm
# --------------------------------------------------------------------------------------------


def test_one_pass_statistics_on_accelerators_and_two_pass_on_cpu():
    for platform, form in (("cpu", "two_pass"), ("cuda", "one_pass"), ("tpu", "one_pass")):
        text = lowered_text(lambda x, s: batch_moments(x, s, AXES), (2, 4, 4, 3), (3,), platform=platform)
        assert f"moments_{form}" in text
        assert "moments_one_pass" not in text or form == "one_pass"


def test_shifted_one_pass_variance_is_accurate_where_the_mean_dwarfs_the_spread():
    """|mean| = 1e4 std: the naive one-pass E[x^2] - E[x]^2 (shift 0) loses the variance to
    float32 cancellation; shifted by a running mean that is half a std off, it does not."""
    rng = np.random.default_rng(0)
    x64 = 1e4 + rng.standard_normal((8, 6, 6, 4)) * np.array([1.0, 0.5, 2.0, 1.0])
    want_mean, want_var = x64.mean(AXES), x64.var(AXES)
    x = jnp.asarray(x64, jnp.float32)
    naive_mean, naive_var = moments_one_pass(x, jnp.zeros(4), AXES)
    assert np.max(np.abs(naive_var / want_var - 1)) > 0.1  # the failure the shift avoids
    for mean, var in (moments_one_pass(x, jnp.asarray(want_mean + 0.5, jnp.float32), AXES),
                      moments_two_pass(x, jnp.zeros(4), AXES)):
        np.testing.assert_allclose(var, want_var, rtol=1e-3)
        np.testing.assert_allclose(mean, want_mean, rtol=1e-6)


def _reference_bn(x, scale, bias, epsilon=1e-3):
    """Two-pass BatchNorm written plainly, differentiated by autodiff."""
    xf = x.astype(jnp.float32)
    mean = xf.mean(AXES)
    var = jnp.square(xf - mean).mean(AXES)
    return ((xf - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias).astype(x.dtype)


def _bn_inputs(shape=(8, 5, 5, 6)):
    k = jax.random.split(jax.random.key(3), 4)
    x = jax.random.normal(k[0], shape) * 3 + 2
    scale = 1 + 0.1 * jax.random.normal(k[1], shape[-1:])
    bias = 0.1 * jax.random.normal(k[2], shape[-1:])
    w = jax.random.normal(k[3], shape)
    return x, scale, bias, w


def test_custom_backward_equals_autodiff():
    x, scale, bias, w = _bn_inputs()
    shift = jnp.full((6,), 1.5)

    def ours(x, scale, bias):
        return jnp.sum(jnp.sin(batch_norm_train(x, scale, bias, shift, 1e-3, AXES, None)[0]) * w)

    def reference(x, scale, bias):
        return jnp.sum(jnp.sin(_reference_bn(x, scale, bias)) * w)

    got = jax.grad(ours, (0, 1, 2))(x, scale, bias)
    want = jax.grad(reference, (0, 1, 2))(x, scale, bias)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


def test_cross_replica_forward_and_backward_equal_one_device_on_the_whole_batch():
    """4 replicas x 2 images with axis_name: outputs, statistics and the input gradient equal
    one device's on all 8 images; scale/bias gradients are each replica's share (summed over
    replicas they give the whole batch's)."""
    x, scale, bias, w = _bn_inputs()
    shift = jnp.zeros(6)

    def loss(x, scale, bias, w, axis_name):
        y, mean, var = batch_norm_train(x, scale, bias, shift, 1e-3, AXES, axis_name)
        return jnp.sum(jnp.sin(y) * w), (y, mean, var)

    grad = jax.value_and_grad(loss, (0, 1, 2), has_aux=True)
    (_, (y1, m1, v1)), (gx1, gs1, gb1) = grad(x, scale, bias, w, None)
    per = jax.pmap(lambda x, w: grad(x, scale, bias, w, "batch"), axis_name="batch")
    (_, (y4, m4, v4)), (gx4, gs4, gb4) = per(x.reshape(4, 2, 5, 5, 6), w.reshape(4, 2, 5, 5, 6))
    np.testing.assert_allclose(y4.reshape(y1.shape), y1, rtol=1e-5, atol=1e-5)
    for replica in range(4):
        np.testing.assert_allclose(m4[replica], m1, rtol=1e-5)
        np.testing.assert_allclose(v4[replica], v1, rtol=1e-5)
    np.testing.assert_allclose(gx4.reshape(gx1.shape), gx1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gs4.sum(0), gs1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gb4.sum(0), gb1, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_batchnorm_module_matches_flax_batchnorm(dtype):
    """Same variables, outputs (train and inference), running averages and gradients as
    flax's two-pass `nn.BatchNorm`; bfloat16 in gives bfloat16 out, statistics in float32."""
    x, _, _, w = _bn_inputs()
    x = x.astype(dtype)
    kw = dict(momentum=0.9, epsilon=1e-3, dtype=dtype)
    ref, ours = nn.BatchNorm(use_fast_variance=False, **kw), BatchNorm(**kw)
    v = ref.init(jax.random.key(0), x, use_running_average=False)
    assert jax.tree.structure(v) == jax.tree.structure(ours.init(jax.random.key(0), x, use_running_average=False))
    v = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape), v)

    def loss(module, params):
        y, upd = module.apply({"params": params, "batch_stats": v["batch_stats"]}, x,
                              use_running_average=False, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(y.astype(jnp.float32)) * w), (y, upd)

    (l_ref, (y_ref, u_ref)), g_ref = jax.value_and_grad(lambda p: loss(ref, p), has_aux=True)(v["params"])
    (l_our, (y_our, u_our)), g_our = jax.value_and_grad(lambda p: loss(ours, p), has_aux=True)(v["params"])
    assert y_our.dtype == dtype
    tol = 1e-5 if dtype == jnp.float32 else 1e-2
    np.testing.assert_allclose(np.float32(y_our), np.float32(y_ref), rtol=tol, atol=tol)
    for a, b in zip(jax.tree.leaves((u_our, g_our)), jax.tree.leaves((u_ref, g_ref))):
        np.testing.assert_allclose(a, b, rtol=10 * tol, atol=10 * tol)
    y_eval = ours.apply(v, x, use_running_average=True)
    np.testing.assert_allclose(np.float32(y_eval), np.float32(ref.apply(v, x, use_running_average=True)),
                               rtol=tol, atol=tol)
