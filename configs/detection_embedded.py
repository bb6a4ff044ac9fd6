"""SSDLite (MobileNetV1 width 0.25 backbone) on the embedded detection set at 64x64, on CPU.

python -m mobilenet_jax.train --config configs/detection_embedded.py --workdir /tmp/ssdlite_embedded

The task follows the data set: "embedded_detection" batches carry boxes, so the trainer
runs the SSD loss and evaluates COCO AP / AP50 / AP75 with pycocotools. BatchNorm momentum
0.9 (not the TF API's 0.97, meant for 100k+ steps): in a few hundred steps 0.97's moving
statistics lag the weights, and at eval time the lag compounds layer by layer until the
outputs no longer depend on the image.
"""
from mobilenet_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "ssdlite"
    c.model_kwargs = dict(backbone="mobilenet_v1", width=0.25, bn_momentum=0.9)
    c.dtype = "float32"  # CPU: bfloat16 is emulated and slower
    c.dataset = "embedded_detection"
    c.image_size = 64
    c.embedded_num_train = 4096
    c.embedded_num_eval = 256
    c.max_boxes = 8
    c.batch_size = 32
    c.num_train_steps = 1000
    c.optimizer = "sgd"
    c.momentum = 0.9
    c.nesterov = True
    c.learning_rate = 0.05
    c.grad_clip_norm = 5.0
    c.lr_schedule = "cosine"
    c.warmup_steps = 50
    c.weight_decay = 4e-5
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 250
    c.log_every_steps = 50
    return c
