"""Segmentation (V3 Sec. 6.4 LR-ASPP, V2 Sec. 6.3 Mobile DeepLabv3): atrous backbones at
output stride 16 / 8, the heads' shapes and switches, and parameter counts equal to
torchvision's reference builders. Shapes and counts are abstract (`jax.eval_shape`); the
few real forward passes use width 0.35 at 64 px."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_jax.models import create_model
from mobilenet_jax.models.common import atrous_schedule, feature_strides
from mobilenet_jax.models.registry import ModelConfigError
from mobilenet_jax.sizes import abstract_variables, count_leaves, count_madds
from mobilenet_jax.segmentation import models as segmentation  # registers lraspp, deeplabv3
from mobilenet_jax.segmentation.heads import LRASPPHead, resize_bilinear

# Measured with torchvision 0.29.1 (torch 2.14.1, CPU), random weights:
#   lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
#   deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=False)
# params = sum(p.numel() for p in m.parameters()); BN stats = the numel of every BatchNorm's
# running_mean and running_var (the scalar num_batches_tracked buffers, 47 and 53, have no
# counterpart here). The backbone alone (m.backbone): 2,971,952 params, 24,400 BN stats.
TORCHVISION_LRASPP_V3_LARGE = (3_221_538, 24_656)
TORCHVISION_DEEPLABV3_V3_LARGE = (11_025_477, 27_984)
# torchvision 0.29.1's weights metadata `_ops` (GMACs at 520x520): LR-ASPP 2.086;
# DeepLabV3 10.452, counted with its auxiliary FCN head (aux_loss=True weights).
TORCHVISION_LRASPP_GMACS_520 = 2.086

IMAGE = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)


def output_and_variables(model, image=IMAGE):
    return jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x), image)


def sizes(model, resolution=64):
    v = abstract_variables(model, resolution)
    return count_leaves(v["params"]), count_leaves(v["batch_stats"])


def test_parameter_counts_equal_torchvision():
    """torchvision's LR-ASPP is ours without the paper's halved tail (torchvision builds the
    full-width V3-Large); its DeepLabV3 is ours at the defaults. Counts are equal to the unit:
    params (kernels, biases, BN scale/offset) and BN statistics (running mean and variance)."""
    assert sizes(create_model("lraspp", reduced_tail=False)) == TORCHVISION_LRASPP_V3_LARGE
    assert sizes(create_model("deeplabv3")) == TORCHVISION_DEEPLABV3_V3_LARGE
    backbone = create_model("mobilenet_v3_large", features_only=True, output_stride=16)
    assert sizes(backbone) == (2_971_952, 24_400)


def test_lraspp_head_size_by_hand():
    """The head on V3-Large's 960-channel C5 and 40-channel C3: 1x1 conv 128 + BN, gate 1x1
    conv 128 (no bias), two 1x1 classifiers with bias; the paper's halved tail (default)
    halves C5 to 480."""
    head = lambda c5: c5 * 128 + 2 * 128 + c5 * 128 + 40 * 21 + 21 + 128 * 21 + 21  # noqa: E731
    assert TORCHVISION_LRASPP_V3_LARGE[0] - 2_971_952 == head(960)
    halved_backbone = sizes(create_model("mobilenet_v3_large", features_only=True, reduced_tail=True))[0]
    assert sizes(create_model("lraspp"))[0] == halved_backbone + head(480)


def test_lraspp_multiply_adds_equal_torchvision_at_520():
    """Counted from the model (profile.py: convs and classifiers, no resizing) at torchvision's
    520x520: 2.086 GMACs as torchvision's metadata says. (Its DeepLabV3 figure, 10.452, adds the
    auxiliary FCN head: 65*65*(9*40*10 + 10*21) = 16,097,250 on top of ours, 10,436,350,688.)"""
    madds = count_madds(create_model("lraspp", reduced_tail=False), 520)
    assert round(madds / 1e9, 3) == TORCHVISION_LRASPP_GMACS_520


@pytest.mark.parametrize("backbone", ["mobilenet_v3_large", "mobilenet_v3_small"])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_lraspp_logits_at_input_size(backbone, output_stride):
    model = create_model("lraspp", backbone=backbone, width=0.35, output_stride=output_stride)
    logits, _ = output_and_variables(model, jax.ShapeDtypeStruct((2, 64, 72, 3), jnp.float32))
    assert logits.shape == (2, 64, 72, 21) and logits.dtype == jnp.float32


@pytest.mark.parametrize("backbone,output_stride,aspp", [
    ("mobilenet_v2", 16, "reduced"), ("mobilenet_v2", 8, "full"), ("mobilenet_v3_large", 16, "full"),
    ("mobilenet_v3_large", 8, "reduced"),
])
def test_deeplabv3_logits_at_input_size(backbone, output_stride, aspp):
    model = create_model("deeplabv3", backbone=backbone, width=0.35, output_stride=output_stride, aspp=aspp,
                         num_classes=5, dtype=jnp.bfloat16)
    logits, _ = output_and_variables(model, jax.ShapeDtypeStruct((1, 65, 64, 3), jnp.float32))
    assert logits.shape == (1, 65, 64, 5) and logits.dtype == jnp.float32


def test_reduced_aspp_keeps_only_the_1x1_and_pooling_branches():
    """V2 Sec. 6.3's R-ASPP: the three 3x3 atrous branches (3 x 9 x C5 x 256 kernels + BN) go
    away, and the projection takes 2 x 256 channels instead of 5 x 256."""
    full, reduced = (sizes(create_model("deeplabv3", aspp=a)) for a in ("full", "reduced"))
    c5 = 960
    assert full[0] - reduced[0] == 3 * (9 * c5 * 256 + 2 * 256) + 3 * 256 * 256
    assert full[1] - reduced[1] == 3 * 2 * 256
    _, v = output_and_variables(create_model("deeplabv3", aspp="reduced"))
    assert sorted(v["params"]["head"]["aspp"]) == ["conv_1x1", "image_pool", "project"]


def test_mobile_deeplabv3_on_mnet_v2_star():
    """V2 Sec. 6.3's configuration: the head on the last block's 320 channels (MNet V2*, no
    1280 conv), reduced ASPP, a 1x1 classifier right after the projection: by hand, the V2
    classifier network's 3,504,872 params less the classifier (1,281,000) and the last conv
    (320 x 1280 + BN 2 x 1280), plus 1x1 320->256 twice (+BN), projection 512->256 (+BN) and
    the 256->21 classifier."""
    model = create_model("deeplabv3", backbone="mobilenet_v2", aspp="reduced", head_conv=False, last_conv=False)
    backbone = 3_504_872 - 1_281_000 - (320 * 1280 + 2 * 1280)
    head = 2 * (320 * 256 + 2 * 256) + 512 * 256 + 2 * 256 + 256 * 21 + 21
    assert sizes(model)[0] == backbone + head
    logits, _ = output_and_variables(create_model("deeplabv3", backbone="mobilenet_v2", width=0.35, aspp="reduced",
                                                  head_conv=False, last_conv=False))
    assert logits.shape == (1, 64, 64, 21)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_feature_maps_keep_their_names_at_every_output_stride(name):
    """C3 / C4 / C5 are the same layers (same channels, same parameters) at output stride 32,
    16 and 8; only their resolution changes, as `feature_strides` documents."""
    channels, trees = set(), set()
    for output_stride in (32, 16, 8):
        model = create_model(name, width=0.35, features_only=True, output_stride=output_stride)
        maps, v = output_and_variables(model, jax.ShapeDtypeStruct((1, 128, 128, 3), jnp.float32))
        assert {k: 128 // m.shape[1] for k, m in maps.items()} == feature_strides(output_stride)
        channels.add(tuple(m.shape[-1] for m in maps.values()))
        trees.add(str(jax.tree.map(lambda a: a.shape, v)))
    assert len(channels) == 1 and len(trees) == 1
    assert feature_strides(16) == {"C3": 8, "C4": 16, "C5": 16}


def test_atrous_schedule_is_torchvisions_dilated_v3_large():
    """At output stride 16, V3-Large's last stage (the C4 block and the two after it) runs at
    stride 1 with dilation 2, the C4 block included (torchvision's `dilated=True`); at 8 the
    80-channel stage gets dilation 2 and the last one 4. At 32 nothing changes."""
    def schedule(os):
        table = create_model("mobilenet_v3_large", output_stride=os).block_table()
        return [(b["strides"], b["dilation"]) for b in table]

    nominal = [(b.strides, 1) for b in create_model("mobilenet_v3_large").table]
    assert schedule(32) == nominal
    assert schedule(16) == nominal[:12] + [(1, 2)] * 3
    assert schedule(8) == nominal[:6] + [(1, 2)] * 6 + [(1, 4)] * 3
    assert atrous_schedule([1, 2, 2, 2, 1, 2, 1], 32) == [(s, 1) for s in (1, 2, 2, 2, 1, 2, 1)]


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_output_stride_32_is_the_unchanged_classifier(name):
    """The default builds the classification network as before: no dilated convolution in the
    traced model (every conv's rhs_dilation is 1), the published counts unchanged."""
    model = create_model(name, width=0.35)
    assert model.output_stride == 32
    v = abstract_variables(model, 64)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x))(v, IMAGE)
    assert "rhs_dilation=(2, 2)" not in str(jaxpr)
    dilated = create_model(name, width=0.35, output_stride=16)
    assert "rhs_dilation=(2, 2)" in str(jax.make_jaxpr(lambda v, x: dilated.apply(v, x))(v, IMAGE))
    published = {"mobilenet_v2": (3_504_872, 34_112), "mobilenet_v3_large": (5_483_032, 24_400),
                 "mobilenet_v3_small": (2_542_856, 12_112)}[name]
    assert sizes(create_model(name)) == published == sizes(create_model(name, output_stride=16))


def test_lraspp_forward_and_paper_gate():
    """A real forward pass (train and eval); at 64 px the 1/16 map is smaller than the paper's
    49x49 window, so the paper's pooling clipped to the map is the global pooling."""
    x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3), minval=-1, maxval=1)
    glob = create_model("lraspp", backbone="mobilenet_v3_small", width=0.35, num_classes=3)
    paper = create_model("lraspp", backbone="mobilenet_v3_small", width=0.35, num_classes=3, gate_pooling="paper")
    v = glob.init(jax.random.key(1), x)
    y = glob.apply(v, x)
    assert y.shape == (2, 64, 64, 3) and np.isfinite(np.asarray(y)).all()
    np.testing.assert_allclose(paper.apply(v, x), y, rtol=1e-5, atol=1e-5)
    y_train, updates = glob.apply(v, x, train=True, mutable=["batch_stats"])
    assert np.isfinite(np.asarray(y_train)).all() and "head" in updates["batch_stats"]


def test_paper_gate_pools_49x49_with_stride_16_20():
    """On Cityscapes' 1024x2048 inputs the 1/16 map is 64x128 and the paper's pooling gives a
    1x4 gate; it then differs from the global gate."""
    low, high = jnp.ones((1, 128, 256, 4)), jax.random.normal(jax.random.key(0), (1, 64, 128, 8))
    head = LRASPPHead(3, features=4, gate_pooling="paper")
    v = head.init(jax.random.key(1), low, high)
    out, inter = head.apply(v, low, high, capture_intermediates=lambda m, _: m.name == "gate",
                            mutable=["intermediates"])
    assert out.shape == (1, 128, 256, 3)
    assert inter["intermediates"]["gate"]["__call__"][0].shape == (1, 1, 4, 4)
    glob = LRASPPHead(3, features=4, gate_pooling="global").apply(v, low, high)
    assert not np.allclose(glob, out)


def test_resize_bilinear_is_half_pixel_bilinear():
    """Upsampling equals jax.image.resize's bilinear (half-pixel centres, PyTorch's
    align_corners=False) without the matmuls the size accounting would count."""
    x = jax.random.normal(jax.random.key(0), (2, 5, 7, 3))
    for size in ((10, 14), (40, 56), (13, 9), (5, 7)):
        np.testing.assert_allclose(resize_bilinear(x, size), jax.image.resize(x, (2, *size, 3), "bilinear"),
                                   rtol=1e-5, atol=1e-5)
    jaxpr = str(jax.make_jaxpr(lambda x: resize_bilinear(x, (40, 56)))(x))
    assert "dot_general" not in jaxpr


@pytest.mark.parametrize("name,fields,match", [
    ("mobilenet_v2", dict(output_stride=12), "output_stride must be one of"),
    ("mobilenet_v3_large", dict(output_stride=4), "output_stride must be one of"),
    ("mobilenet_v3_small", dict(output_stride=True), "output_stride"),
    ("mobilenet_v2", dict(last_conv=False), "features_only=True"),
    ("lraspp", dict(output_stride=64), "output_stride"),
    ("lraspp", dict(backbone="mobilenet_v2"), "backbone must be one of"),
    ("lraspp", dict(gate_pooling="max"), "gate_pooling"),
    ("lraspp", dict(head_features=0), "head_features"),
    ("lraspp", dict(features_only=True), "features_only"),
    ("deeplabv3", dict(backbone="xception"), "backbone must be one of"),
    ("deeplabv3", dict(aspp="tiny"), "aspp must be one of"),
    ("deeplabv3", dict(atrous_rates=()), "atrous_rates"),
    ("deeplabv3", dict(atrous_rates=(6, 0)), "atrous_rates"),
    ("deeplabv3", dict(backbone="mobilenet_v2", reduced_tail=True), "reduced_tail=False"),
    ("deeplabv3", dict(last_conv=False), "MNet V2"),
    ("deeplabv3", dict(num_classes=0), "num_classes"),
    ("deeplabv3", dict(dropout_rate=1.0), "dropout_rate"),
])
def test_bad_fields_raise_model_config_error(name, fields, match):
    with pytest.raises(ModelConfigError, match=match):
        create_model(name, **fields)


def test_models_are_registered_segmentation_tasks():
    assert segmentation.LRASPP.task == segmentation.DeepLabV3.task == "segmentation"
    assert create_model("lraspp").num_classes == create_model("deeplabv3").num_classes == 21
    with pytest.raises(ValueError, match="3 input channels"):
        create_model("lraspp", width=0.35).init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)))


def test_summary_lists_the_segmentation_models():
    """The size table carries the torchvision configurations (equal counts) and the papers'."""
    from mobilenet_jax.summary import VARIANTS

    rows = {v.variant: v for v in VARIANTS if v.model in ("lraspp", "deeplabv3")}
    assert len(rows) == 7 and all(v.resolution == 520 for v in rows.values())
    tv = {"V3-L OS16 (torchvision)": TORCHVISION_LRASPP_V3_LARGE,
          "V3-L ASPP OS16 (torchvision)": TORCHVISION_DEEPLABV3_V3_LARGE}
    for variant, reference in tv.items():
        assert sizes(create_model(rows[variant].model, **rows[variant].overrides)) == reference
