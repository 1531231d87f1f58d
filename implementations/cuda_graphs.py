"""``cuda_graphs``: the compiled products captured as CUDA graphs (torch.compile mode "reduce-overhead").

How: the ``compiled`` strategy's products (torch.compile of func_vmap's torch.func products,
kept per workload signature), compiled in mode "reduce-overhead": inductor records the
product's kernels once into a CUDA graph and then replays the graph, one launch for all of
them, copying each call's inputs into the graph's static buffers. Every call starts a new
step (``torch.compiler.cudagraph_mark_step_begin``) and its results are cloned, since the
next replay overwrites the graph's outputs.

What it refuses: the CPU (CUDA graphs record CUDA kernels), and whatever ``compiled`` refuses
(``create_graph=True`` among them).

Calls per workload: the first compiles and runs the kernels eagerly (cudagraph trees' warm-up),
the second records the CUDA graph, in a memory pool of the graph's own that holds the product's
intermediates for as long as the graph lives, and later calls replay it. The benchmark times the
second call alone (``capture_s``) and takes the cell's peak memory from it: a replay allocates
nothing. :meth:`release` frees the graphs and their pool.

When it wins: many repeated products at fixed shapes on the GPU whose time goes on kernel
launches (small and medium models), after a first call that compiles and captures (seconds).
"""

import torch

from gvp_bench.kit import Unsupported
from implementations.compiled import Compiled


class CudaGraphs(Compiled):
    name = "cuda_graphs"
    compile_options = {**Compiled.compile_options, "triton.cudagraphs": True}  # what mode "reduce-overhead" sets
    records_on_second_call = True  # cudagraph trees run a function's first call eagerly (a warm-up), record on the 2nd
    unsupported = Compiled.unsupported + (
        Unsupported(("cpu",), "CUDA graphs record CUDA kernels", "CUDA graphs record and replay CUDA kernels only"),
    )

    def delegate(self, product, func, params, *args):
        if not params[0].is_cuda:
            self._refuse(product, func, params, args, f"CUDA graphs record CUDA kernels; the params are on "
                                                      f"{params[0].device}")
        torch.compiler.cudagraph_mark_step_begin()
        results = super().delegate(product, func, params, *args)
        if isinstance(results, torch.Tensor):
            return results.clone()
        return [result.clone() for result in results]
