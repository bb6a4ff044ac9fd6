"""The latency side of the papers: V3 Sec. 5.1's last-stage and stem switches (their MAdds
beside the paper's), and the latency benchmark's timing and table (benchmarks.latency)."""
from __future__ import annotations

import pytest

from mobilenet_jax import create_model
from mobilenet_jax.models.registry import ModelConfigError
from mobilenet_jax.profile import model_size


def test_v3_efficient_last_stage_and_small_stem_save_the_papers_madds():
    """V3 Sec. 5.1: the efficient last stage saves "30M MAdds" (ours 34.3M: the original stage
    of Fig. 5 at 7x7), the 16-filter h-swish stem "10M MAdds" (ours 10.4M)."""
    published = model_size(create_model("mobilenet_v3_large"), 224)
    original = model_size(create_model("mobilenet_v3_large", last_stage="original"), 224)
    relu32 = model_size(create_model("mobilenet_v3_large", stem="relu32"), 224)
    assert 30e6 <= original.madds - published.madds <= 36e6
    assert 9.5e6 <= relu32.madds - published.madds <= 11e6
    with pytest.raises(ModelConfigError, match="last_stage"):
        create_model("mobilenet_v3_large", last_stage="v2")
    with pytest.raises(ModelConfigError, match="stem"):
        create_model("mobilenet_v3_small", stem="relu16")
