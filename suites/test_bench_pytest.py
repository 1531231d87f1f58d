"""pytest-benchmark over the cells of gvp-bench's suites (gvp_bench.bench.workloads), one benchmark each.

    python -m pytest suites/test_bench_pytest.py -k quick --benchmark-json=bench.json

Each cell is a test named ``<suite>-<op>-<model>-<size>-<strategy>-<device>-<dtype>[-k<k>]``
(select with ``-k``), grouped with the other strategies of its workload. The timed function
synchronises CUDA after each call, so pytest-benchmark's clock counts the kernels. A cell the
strategy cannot compute is skipped with the reason, a CUDA cell on a machine without CUDA too.
``extra_info`` holds the cell's fields, ``peak_bytes`` (gvp_bench.bench.measure.peak_bytes, a
separate call), ``forward_median_s`` (the plain forward pass, timed by torch.utils.benchmark),
``forward_ratio`` (pytest-benchmark's median over it) and ``workarounds``.
"""

import dataclasses

import pytest
import torch

from gvp_bench.bench import measure, workloads
from gvp_bench.errors import UnsupportedError

pytestmark = pytest.mark.filterwarnings("ignore::gvp_bench.workarounds.WorkaroundWarning")  # in extra_info instead


def _cells():
    for suite in workloads.SUITES.values():
        for cell in workloads.expand(suite, devices=workloads.DEVICES):
            name = "-".join(str(value) for value in (suite.name, *cell.key()[:-1]))
            group = f"{suite.name} {cell.op} {cell.model}/{cell.size} {cell.device} {cell.dtype}"
            mark = pytest.mark.benchmark(group=group + (f" k={cell.k}" if cell.k else ""), max_time=suite.max_run_time)
            yield pytest.param(suite, cell, id=name + (f"-k{cell.k}" if cell.k else ""), marks=mark)


@pytest.mark.parametrize("suite, cell", list(_cells()))
def test_product(benchmark, suite, cell):
    if cell.device == "cuda" and not torch.cuda.is_available():  # asked here, not at import: asv imports this too
        pytest.skip("no CUDA device")
    prepared = workloads.prepare(cell)
    try:
        prepared.product()
    except UnsupportedError as error:
        pytest.skip(str(error))

    def product():
        prepared.product()
        measure.synchronize(cell.device)

    benchmark(product)
    benchmark.extra_info.update(dataclasses.asdict(cell), workarounds=prepared.workarounds())
    if benchmark.disabled:
        return
    forward = measure.time_call(prepared.forward, device=cell.device, threads=torch.get_num_threads(),
                                min_run_time=suite.min_run_time, max_run_time=suite.max_run_time)
    benchmark.extra_info.update(peak_bytes=measure.peak_bytes(prepared.product, cell.device),
                                forward_median_s=forward.median_s,
                                forward_ratio=benchmark.stats.stats.median / forward.median_s)
