"""asv benchmarks over the quick suite's workloads (gvp_bench.bench.workloads), with params over op,
model, strategy and device.

``time_product`` is the time of one call (CUDA synchronised after it); ``track_peak_bytes`` the
peak memory of a call above what its inputs hold; ``track_forward_ratio`` its cost in forward
passes (median time over the median of the plain forward pass, both timed by
torch.utils.benchmark). asv.conf.json launches the benchmarks from a fork server that imports
this directory once; nothing here touches CUDA at import, so each forked benchmark process
initialises CUDA itself (CUDA cannot be used in a child forked after its parent did). A CUDA
benchmark is skipped where there is no CUDA device, as is a product the strategy cannot compute.
"""

import torch

import gvp_bench
from gvp_bench.bench import measure, workloads

SUITE = workloads.SUITES["quick"]


class Products:
    params = [list(workloads.OPS), [f"{model}/{size}" for model, size in SUITE.models], gvp_bench.strategies(),
              list(workloads.DEVICES)]
    param_names = ["op", "model", "strategy", "device"]
    timeout = SUITE.timeout_s

    def setup(self, op, model, strategy, device):
        if device == "cuda" and not torch.cuda.is_available():
            raise NotImplementedError("no CUDA device")  # asv: skipped
        name, size = model.split("/")
        k = SUITE.ks[0] if op in workloads.BATCH_OPS else None
        self.cell = workloads.prepare(workloads.Workload(op, name, size, strategy, device, SUITE.dtypes[0], k))
        try:
            self.cell.product()
        except gvp_bench.UnsupportedError as error:
            raise NotImplementedError(str(error)) from None
        self.device = device

    def time_product(self, *params):
        self.cell.product()
        measure.synchronize(self.device)

    def track_peak_bytes(self, *params):
        return measure.peak_bytes(self.cell.product, self.device)

    track_peak_bytes.unit = "bytes"

    def track_forward_ratio(self, *params):
        product, forward = (measure.time_call(call, device=self.device, threads=torch.get_num_threads(),
                                              min_run_time=SUITE.min_run_time, max_run_time=SUITE.max_run_time)
                            for call in (self.cell.product, self.cell.forward))
        return product.median_s / forward.median_s

    track_forward_ratio.unit = "forward passes"
