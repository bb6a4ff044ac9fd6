"""SSDLite320-MobileNetV3-Large on COCO 2017 (MobileNetV3 Sec. 6.3, Table 6).

The papers give no detection training recipe; this one is torchvision's reference for
`ssdlite320_mobilenet_v3_large` (21.3 AP on val2017): SGD with momentum 0.9, lr 0.15 for a
global batch of 192 (24 on each of 8 GPUs), cosine decay over 660 epochs, weight decay 4e-5,
SSD's random crop and flip (data/coco.py). Ours adds a one-epoch linear warmup. BatchNorm
decay 0.97 as the TF object detection API's SSDLite configs. tfds's coco/2017 has 80 classes.

    python -m mobilenet_jax.train --config configs/ssdlite_coco.py --workdir gs://B/ssdlite_v3 \
        --config.data_dir=gs://B/tfds
    python -m mobilenet_jax.evaluate --checkpoint gs://B/ssdlite_v3 --data-dir gs://B/tfds

Other backbones: --config.model_kwargs.backbone=mobilenet_v2 (V2 Table 6),
--config.model_kwargs.reduced_tail=True (V3's halved tail).
"""
from mobilenet_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "ssdlite"
    c.model_kwargs = dict(backbone="mobilenet_v3_large", width=1.0, bn_momentum=0.97)
    c.dataset = "coco/2017"
    c.image_size = 320
    c.batch_size = 192
    c.num_epochs = 660.0
    c.optimizer = "sgd"
    c.momentum = 0.9
    c.learning_rate = 0.15
    c.lr_schedule = "cosine"
    c.warmup_epochs = 1.0
    c.weight_decay = 4e-5
    c.eval_every_steps = -1  # once per epoch
    c.log_every_steps = 100
    return c
