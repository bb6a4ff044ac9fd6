"""LR-ASPP on MobileNetV3-Large (halved tail, output stride 16: V3 Sec. 6.4) on Cityscapes' 19
train classes.

tfds's cityscapes/semantic_segmentation is a manual download: put leftImg8bit_trainvaltest.zip
and gtFine_trainvaltest.zip (from the Cityscapes site, after registering) in
D/downloads/manual, then

    python -m mobilenet_jax.data prepare cityscapes/semantic_segmentation --data-dir D
    python -m mobilenet_jax.train --config configs/lraspp_cityscapes.py --workdir W --config.data_dir=D
    python -m mobilenet_jax.evaluate --checkpoint W

Training crops of 768x768 from frames scaled by [0.5, 2] and flipped; evaluation on the full
1024x2048 frames (the benchmark's protocol). The V3 text gives no segmentation recipe: this is
the DeepLab-style one (SGD with momentum 0.9, weight decay 4e-5, batch 16, ~93k steps), with a
cosine decay where DeepLab uses its polynomial one. V2's Mobile DeepLabv3: --config.model=deeplabv3
'--config.model_kwargs={"backbone": "mobilenet_v2", "aspp": "reduced", "head_conv": False,
"last_conv": False}'.
"""
from mobilenet_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "lraspp"
    c.model_kwargs = dict(backbone="mobilenet_v3_large", width=1.0, output_stride=16, reduced_tail=True)
    c.dataset = "cityscapes/semantic_segmentation"
    c.image_size = 768  # the training crop
    c.batch_size = 16
    c.eval_batch_size = 8
    c.num_epochs = 500.0  # 2,975 training frames: ~93k steps at batch 16
    c.optimizer = "sgd"
    c.momentum = 0.9
    c.learning_rate = 0.02
    c.lr_schedule = "cosine"
    c.warmup_epochs = 1.0
    c.weight_decay = 4e-5
    c.eval_every_steps = -1  # once per epoch
    c.log_every_steps = 100
    return c
