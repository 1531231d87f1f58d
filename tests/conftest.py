import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from gvp_bench.precision import strict_fp32

# auto runs its fixed rule in the tests, so which strategy answers a conformance cell is
# deterministic and no test pays for calibration; tests/test_auto.py configures auto itself and
# covers calibration and results. GVP_BENCH_AUTO=measured (or calibrate) runs every test with
# measured auto instead (the conformance of auto then takes about 20 s more on 2 cores).
os.environ.setdefault("GVP_BENCH_AUTO", "rule")

# The conformance models are tiny: a second intra-op thread only adds synchronisation, and on a
# loaded 2-core machine it made a tiny CNN's forward pass 100x slower (25 ms against 0.13 ms).
torch.set_num_threads(1)

# Property tests (tests/test_properties.py): "ci", the default, is bounded and derandomized, so CI is
# deterministic and fast; HYPOTHESIS_PROFILE=explore draws ten times as many random examples, to hunt.
settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", max_examples=1000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")),
]


@pytest.fixture(autouse=True)
def _exact_cuda_matmul():
    """Tests on CUDA compare float32 against float64: TF32 off (as the conformance harness sets it itself)."""
    with strict_fp32():
        yield
