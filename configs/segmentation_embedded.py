"""LR-ASPP on MobileNetV3-Small (width 0.35, output stride 16) on the embedded segmentation set
at 64x64, on CPU.

python -m mobilenet_jax.train --config configs/segmentation_embedded.py --workdir /tmp/lraspp_embedded

The embedded detection set's scenes with per-pixel masks: background 0, the ten shapes 1..10,
an ignore band (255) along each outline. The task follows the pair: a segmentation model
(`lraspp`, `deeplabv3`) on a segmentation data set trains the per-pixel cross-entropy and is
evaluated by mean IoU; the best checkpoint is kept by mean IoU. Other backbones and strides:
--config.model_kwargs.backbone=mobilenet_v3_large, --config.model_kwargs.output_stride=8,
--config.model_kwargs.reduced_tail=False. Another head (V2's Mobile DeepLabv3) replaces the
whole dict: --config.model=deeplabv3 '--config.model_kwargs={"backbone": "mobilenet_v2",
"aspp": "reduced", "head_conv": False, "last_conv": False, "width": 0.35}'.
"""
from mobilenet_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "lraspp"
    # Every field the docstring's overrides name is listed: --config.model_kwargs.KEY sets keys
    # the config file has.
    c.model_kwargs = dict(backbone="mobilenet_v3_small", width=0.35, bn_momentum=0.9, output_stride=16,
                          reduced_tail=True)
    c.dtype = "float32"  # CPU: bfloat16 is emulated and slower
    c.dataset = "embedded_segmentation"
    c.image_size = 64
    c.embedded_num_train = 2048
    c.embedded_num_validation = 256
    c.embedded_num_eval = 512
    c.batch_size = 32
    c.num_train_steps = 1000
    c.optimizer = "adam"
    c.learning_rate = 3e-3
    c.lr_schedule = "cosine"
    c.warmup_steps = 20
    c.weight_decay = 0.0
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 250
    c.log_every_steps = 50
    return c
