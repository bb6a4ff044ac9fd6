"""MobileNetV2 (width 0.35) on the embedded shapes data set, 32x32, on one CPU in minutes.

python -m mobilenet_jax.train --config configs/embedded.py --workdir /tmp/mnv2_embedded

Eval accuracy after each of the 5 epochs (2-core CPU, ~3 min): 23.1, 83.1, 95.3, 97.0, 97.8%.
Nesterov SGD at 0.02 with clipping: at 0.05 the net does not leave chance level in the first
epoch, and Adam (1e-3) learns several times slower; the network's gradient at
initialisation is largest at the stem (~50x the classifier's).
"""
from mobilenet_jax.train.config import default_config


def get_config():
    c = default_config()
    c.model = "mobilenet_v2"
    c.model_kwargs = dict(width=0.35, dropout_rate=0.0, bn_momentum=0.9)
    c.dtype = "float32"  # CPU: bfloat16 is emulated and slower
    c.dataset = "embedded"
    c.image_size = 32
    c.embedded_num_train = 20_000
    c.embedded_num_eval = 2_000
    c.batch_size = 64
    c.num_epochs = 5.0
    c.optimizer = "sgd"
    c.momentum = 0.9
    c.nesterov = True
    c.learning_rate = 0.02
    c.grad_clip_norm = 5.0  # at init the stem gradient is ~50x the classifier's
    c.lr_schedule = "cosine"
    c.warmup_epochs = 0.25
    c.weight_decay = 4e-5
    c.log_every_steps = 50
    return c
