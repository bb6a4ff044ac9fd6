"""Detection library: backbone feature maps, anchors, box coder, matching, loss, NMS, SSDLite."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_jax.detection import anchors as anchors_lib
from mobilenet_jax.detection.boxes import decode, encode, pairwise_iou
from mobilenet_jax.detection.loss import hard_negatives, ssd_loss
from mobilenet_jax.detection.matching import BACKGROUND, match
from mobilenet_jax.detection.nms import multiclass_nms
from mobilenet_jax.detection.ssdlite import feature_map_sizes, load_backbone, model_anchors
from mobilenet_jax.models import create_model
from mobilenet_jax.models.registry import ModelConfigError
from mobilenet_jax.sizes import abstract_variables

BACKBONES = [
    ("mobilenet_v1", {}, {"C3": 256, "C4": 512, "C5": 1024}),
    ("mobilenet_v2", {}, {"C3": 32, "C4": 576, "C5": 1280}),  # C4: expansion of layer 15
    ("mobilenet_v3_large", {}, {"C3": 40, "C4": 672, "C5": 960}),  # 13th bottleneck's expansion
    ("mobilenet_v3_small", {}, {"C3": 24, "C4": 288, "C5": 576}),  # 9th bottleneck's expansion
    ("mobilenet_v3_large", {"reduced_tail": True}, {"C3": 40, "C4": 672, "C5": 480}),
    ("mobilenet_v3_small", {"reduced_tail": True}, {"C3": 24, "C4": 288, "C5": 288}),
    ("xception", {}, {"C3": 256, "C4": 728, "C5": 2048}),  # entry module 2, middle flow, exit flow
]


def _shapes(tree):
    return {jax.tree_util.keystr(p): l.shape for p, l in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("name, kw, channels", BACKBONES)
def test_backbone_feature_maps_and_shared_names(name, kw, channels):
    backbone = create_model(name, features_only=True, **kw)
    x = jax.ShapeDtypeStruct((1, 320, 320, 3), jnp.float32)
    maps = jax.eval_shape(lambda x: backbone.init_with_output(jax.random.key(0), x)[0], x)
    assert list(maps) == ["C3", "C4", "C5"]
    assert {k: v.shape for k, v in maps.items()} == {
        k: (1, 320 // s, 320 // s, channels[k]) for k, s in (("C3", 8), ("C4", 16), ("C5", 32))}
    # The backbone's parameters are the classifier's, same names and shapes, minus the head.
    ours = {c: _shapes(t) for c, t in abstract_variables(backbone, 224).items()}
    classifier = {c: _shapes(t) for c, t in abstract_variables(create_model(name, **kw), 224).items()}
    for collection, shapes in ours.items():
        assert shapes.items() <= classifier[collection].items()
    left = set(classifier["params"]) - set(ours["params"])
    assert left and all(k.startswith(("['classifier']", "['pre_logits']")) for k in left)


def test_reduced_tail_is_only_for_v3():
    with pytest.raises(ModelConfigError, match="reduced_tail"):
        create_model("ssdlite", backbone="mobilenet_v2", reduced_tail=True)
    with pytest.raises(ModelConfigError, match="backbone"):
        create_model("ssdlite", backbone="resnet50")


def test_anchors_match_the_tf_api_layout():
    # 300x300 SSD: 19, 10, 5, 3, 2, 1 maps with 3, 6, 6, 6, 6, 6 boxes -> the familiar 1917.
    sizes = [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    a = anchors_lib.generate_anchors(sizes)
    assert a.shape == (1917, 4)
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    # First cell of map 0: (0.1, 1), (0.2, 2), (0.2, 1/2) around centre 0.5 / 19.
    np.testing.assert_allclose((a[:3, :2] + a[:3, 2:]) / 2, 0.5 / 19, atol=1e-6)
    np.testing.assert_allclose(w[:3], [0.1, 0.2 * np.sqrt(2), 0.2 / np.sqrt(2)], rtol=1e-5)
    np.testing.assert_allclose(w[:3] * h[:3], [0.01, 0.04, 0.04], rtol=1e-5)
    # Scales grow linearly 0.2 .. 0.95; the last map's extra box is sqrt(0.95 * 1).
    square = [w[i] for i in range(len(w)) if abs(w[i] - h[i]) < 1e-6]
    last = a[-6:]
    np.testing.assert_allclose(last[0, 2] - last[0, 0], 0.95, rtol=1e-5)
    np.testing.assert_allclose(last[-1, 2] - last[-1, 0], np.sqrt(0.95), rtol=1e-5)
    assert min(square) == pytest.approx(0.1) and max(square) == pytest.approx(np.sqrt(0.95))
    start = 19 * 19 * 3
    np.testing.assert_allclose(w[start], 0.2 + 0.75 / 5, rtol=1e-5)  # map 1, ratio 1


def test_encode_decode_round_trip_and_coder_weights():
    rng = np.random.default_rng(0)
    lo = rng.uniform(0, 0.7, (50, 2))
    boxes = np.concatenate([lo, lo + rng.uniform(0.02, 0.3, (50, 2))], -1).astype(np.float32)
    anchors = anchors_lib.generate_anchors([(5, 10)])[:50]
    np.testing.assert_allclose(decode(encode(boxes, anchors), anchors), boxes, atol=1e-5)
    assert np.abs(encode(anchors, anchors)).max() < 1e-5
    # A box shifted by 10% of the anchor width and twice as tall: (1, 0, 0, 5 log 2).
    a = jnp.array([[0.2, 0.2, 0.4, 0.6]])
    b = jnp.array([[0.22, 0.0, 0.42, 0.8]])
    np.testing.assert_allclose(encode(b, a), [[1.0, 0.0, 0.0, 5 * np.log(2)]], atol=1e-5)


def test_matching_hand_made_cases():
    anchors = jnp.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0],
                         [0.5, 0.5, 1.0, 1.0], [0.25, 0.25, 0.75, 0.75]])
    gt = jnp.array([
        [0.0, 0.0, 0.5, 0.55],   # IoU 0.91 with anchor 0
        [0.55, 0.55, 1.0, 1.0],  # IoU 0.81 with anchor 3
        [0.3, 0.3, 0.6, 0.6],    # IoU < 0.5 with all: forced to its best anchor 4 (0.36)
        [0.0, 0.0, 0.5, 0.5],    # padding: never matched although it equals anchor 0
    ])
    valid = jnp.array([True, True, True, False])
    match_fn = jax.jit(match)
    m = np.asarray(match_fn(gt, valid, anchors))
    np.testing.assert_array_equal(m, [0, BACKGROUND, BACKGROUND, 1, 2])
    # An image without objects: every anchor is background.
    assert (np.asarray(match_fn(gt, jnp.zeros(4, bool), anchors)) == BACKGROUND).all()


def _nms_reference(boxes, scores, iou_thr, score_thr, top_k, max_det):
    """Plain greedy per-class NMS in numpy over the top-k (anchor, class) candidates."""
    flat = [(scores[a, c], a, c) for a in range(scores.shape[0]) for c in range(scores.shape[1])]
    flat = sorted(flat, key=lambda t: -t[0])[:top_k]
    kept = []
    for s, a, c in flat:
        if s < score_thr:
            continue
        if all(kc != c or np.asarray(pairwise_iou(boxes[a][None], boxes[ka][None]))[0, 0] <= iou_thr
               for _, ka, kc in kept):
            kept.append((s, a, c))
    return kept[:max_det]


def test_nms_equals_numpy_reference_and_is_batched():
    rng = np.random.default_rng(1)
    batch = []
    for _ in range(3):
        lo = rng.uniform(0, 0.8, (40, 2))
        boxes = np.concatenate([lo, lo + rng.uniform(0.05, 0.3, (40, 2))], -1).astype(np.float32)
        scores = rng.uniform(0, 1, (40, 3)).astype(np.float32) ** 3
        batch.append((boxes, scores))
    fn = jax.jit(jax.vmap(lambda b, s: multiclass_nms(b, s, score_threshold=0.05, iou_threshold=0.45,
                                                      pre_nms_top_k=60, max_detections=20)))
    det = fn(jnp.stack([b for b, _ in batch]), jnp.stack([s for _, s in batch]))
    for i, (boxes, scores) in enumerate(batch):
        ref = _nms_reference(boxes, scores, 0.45, 0.05, 60, 20)
        n = int(det.valid[i].sum())
        assert n == len(ref) and not det.valid[i, n:].any()
        np.testing.assert_allclose(det.scores[i, :n], [s for s, _, _ in ref], rtol=1e-6)
        np.testing.assert_array_equal(det.classes[i, :n], [c + 1 for _, _, c in ref])
        np.testing.assert_allclose(det.boxes[i, :n], boxes[[a for _, a, _ in ref]], rtol=1e-6)


def test_nms_gives_the_same_result_in_every_class():
    # IoU 0.6001 > 0.6: the second box is suppressed, whichever of the 90 COCO classes both
    # are in. (Shifting boxes by 2 x class id in float32 lost that precision from class 65 on.)
    boxes = jnp.array([[0.1, 0.1, 0.13, 0.13], [0.1, 0.1, 0.13, 0.118003]], jnp.float32)
    assert float(pairwise_iou(boxes, boxes)[0, 1]) == pytest.approx(0.6001, abs=1e-4)
    num_classes = 90
    scores = np.zeros((num_classes, 2, num_classes), np.float32)
    for c in range(num_classes):
        scores[c, :, c] = [0.9, 0.8]
    det = jax.jit(jax.vmap(lambda s: multiclass_nms(boxes, s, iou_threshold=0.6)))(scores)
    assert det.valid.sum(-1).tolist() == [1] * num_classes
    np.testing.assert_array_equal(det.classes[:, 0], np.arange(1, num_classes + 1))
    np.testing.assert_allclose(det.scores[:, 0], 0.9)
    np.testing.assert_allclose(det.boxes[:, 0], np.broadcast_to(boxes[0], (num_classes, 4)))


def test_hard_negative_mining_keeps_three_per_positive():
    # 2 images x 40 anchors; image 0 has 3 positives, image 1 none.
    rng = np.random.default_rng(2)
    loss = jnp.asarray(rng.uniform(0, 5, (2, 40)), jnp.float32)
    positive = np.zeros((2, 40), bool)
    positive[0, [3, 10, 20]] = True
    neg = np.asarray(hard_negatives(loss, ~positive, positive.sum(-1), ratio=3, min_negatives=3))
    assert neg.sum(-1).tolist() == [9, 3]
    assert not (neg & positive).any()
    for i in range(2):
        chosen = np.asarray(loss[i])[neg[i]]
        rest = np.asarray(loss[i])[~neg[i] & ~positive[i]]
        assert chosen.min() >= rest.max()


def test_ssd_loss_counts_and_gradients():
    anchors = jnp.asarray(anchors_lib.generate_anchors([(4, 4), (2, 2)]))  # 48 + 24 anchors
    a = anchors.shape[0]
    gt = jnp.array([[[0.1, 0.1, 0.4, 0.45], [0.5, 0.5, 0.9, 0.9], [0, 0, 0, 0]],
                    [[0, 0, 0, 0]] * 3], jnp.float32)
    labels = jnp.array([[1, 2, 0], [0, 0, 0]])
    valid = jnp.array([[True, True, False], [False] * 3])
    codes = jnp.zeros((2, a, 4))
    logits = jax.random.normal(jax.random.key(0), (2, a, 3))
    loss_fn = jax.jit(ssd_loss)
    terms = loss_fn(codes, logits, anchors, gt, labels, valid)
    pos = int(terms.num_positives)
    assert pos >= 2 and int(terms.num_negatives) == 3 * pos + 3  # image 1: min_negatives
    assert float(terms.localization) > 0 and float(terms.classification) > 0
    # Perfect box codes remove the localisation loss.
    from mobilenet_jax.detection.matching import match_batch
    m = match_batch(gt, valid, anchors)
    target = jnp.take_along_axis(gt, jnp.maximum(m, 0)[..., None], 1)
    assert float(loss_fn(encode(target, anchors[None]), logits, anchors, gt, labels, valid).localization) < 1e-6


def test_localization_loss_is_smooth_l1_of_the_code_errors():
    # SSD's smooth L1: 0.5 x^2 below |x| = 1, |x| - 0.5 above, summed over the 4 codes and
    # the matched anchors.
    def smooth_l1(x):
        ax = np.abs(x)
        return np.where(ax < 1.0, 0.5 * ax**2, ax - 0.5)

    anchors = jnp.asarray(anchors_lib.generate_anchors([(4, 4), (2, 2)]))
    gt = jnp.array([[[0.1, 0.1, 0.4, 0.45], [0.5, 0.5, 0.9, 0.9]]], jnp.float32)
    labels, valid = jnp.array([[1, 2]]), jnp.array([[True, True]])
    codes = jax.random.normal(jax.random.key(3), (1, anchors.shape[0], 4)) * 2.0
    logits = jnp.zeros((1, anchors.shape[0], 3))
    terms = jax.jit(ssd_loss)(codes, logits, anchors, gt, labels, valid)
    from mobilenet_jax.detection.matching import match_batch
    m = np.asarray(match_batch(gt, valid, anchors))[0]
    target = encode(gt[0][np.maximum(m, 0)], anchors)
    err = np.asarray(codes[0] - target)[m >= 0]
    assert (np.abs(err) < 1).any() and (np.abs(err) > 1).any()  # both branches are exercised
    np.testing.assert_allclose(float(terms.localization), smooth_l1(err).sum(), rtol=1e-6)


def test_ssdlite_on_xception_feeds_its_c4_and_c5_to_the_heads():
    model = create_model("ssdlite", backbone="xception", width=0.25, num_classes=3)
    x = jax.ShapeDtypeStruct((1, 128, 128, 3), jnp.float32)
    maps = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, return_feature_maps=True)[0], x)
    assert [m.shape[1:] for m in maps[:2]] == [(8, 8, 182), (4, 4, 512)]  # C4 = 728 x 0.25, C5 = 2048 x 0.25
    out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0], x)
    assert out["class_logits"].shape == (1, model_anchors(model, 128).shape[0], 4)


def test_ssdlite_outputs_match_anchors_and_backbone_weights_load():
    model = create_model("ssdlite", backbone="mobilenet_v3_small", width=0.35, num_classes=4)
    x = jnp.zeros((2, 96, 96, 3))
    out, variables = jax.jit(model.init_with_output)(jax.random.key(0), x)
    anchors = model_anchors(model, 96)
    assert [s for s in feature_map_sizes(model, 96)] == [(6, 6), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)]
    assert out["box_codes"].shape == (2, anchors.shape[0], 4)
    assert out["class_logits"].shape == (2, anchors.shape[0], 5)
    rng = np.random.default_rng(0)  # classifier variables: random values of the right shapes
    cvars = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32),
                         abstract_variables(create_model("mobilenet_v3_small", width=0.35), 96))
    loaded = load_backbone(variables, cvars)
    got = jax.tree.leaves(loaded["params"]["backbone"]["stem"])
    want = jax.tree.leaves(cvars["params"]["stem"])
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert np.array_equal(loaded["params"]["class_0_predict"]["kernel"],
                          variables["params"]["class_0_predict"]["kernel"])
    with pytest.raises(ValueError, match="shape mismatch"):
        load_backbone(variables, abstract_variables(create_model("mobilenet_v3_small", width=0.5), 96))
