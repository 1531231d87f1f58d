"""Your own workload as a conformance case: every strategy checked on it against the oracle.

A module workload becomes a model case: the checks run on a copy of the module and input cast
to each dtype asked, and the oracle differentiates a float64 copy by central finite differences
(two forward passes per trainable parameter element, once per device). A closure cannot be
cast: it is checked in its own dtype on its own device, and its oracle runs the closure with the
params' data swapped for float64 copies for each call (restored after), which needs a closure
that computes in its params' dtype. Both are checked on first-order products (second-order
checks would take finite differences of finite differences: a forward pass per pair of
parameter elements).
"""

import copy
from dataclasses import dataclass

import torch

from ..workload import Workload
from .cases import Case, ModelRecipe, Problem
from .matrix import DTYPES, cells as matrix_cells


def _module_recipe(workload):
    def build(generator):
        x = workload.x.cpu()
        return ModelRecipe(copy.deepcopy(workload.model).cpu().double(), x.double() if x.is_floating_point() else x)
    return build


@dataclass(frozen=True, eq=False)
class ClosureCase(Case):
    """A closure workload as a case: its own params in its own dtype, float64 copies for the oracle."""

    workload: Workload = None

    def problem(self, dtype=torch.float64, device="cpu"):
        workload = self.workload
        if dtype == workload.dtype and torch.device(device).type == workload.device.type:
            return Problem(workload.func, workload.tensors)
        if dtype == torch.float64 and torch.device(device).type == workload.device.type:
            copies = [p.detach().to(torch.float64, copy=True) for p in workload.tensors]
            return Problem(_reading(workload, copies), copies)
        raise ValueError(f"workload {workload.name!r} is a closure over {workload.dtype} params on "
                         f"{workload.device.type}: it is checked there only")


def _check_computes_in_float64(workload):
    """Refuse, naming the workload, a closure whose oracle cannot be taken (rather than fail every cell)."""
    if workload.dtype == torch.float64:
        return
    try:
        with torch.no_grad():
            _reading(workload, [p.detach().to(torch.float64, copy=True) for p in workload.tensors])()
    except RuntimeError as error:
        raise ValueError(f"workload {workload.name!r}: its closure fails when its params are float64 "
                         f"({str(error).splitlines()[0]}), so no float64 oracle can be taken; compute in the params' "
                         "dtype (x.to(w)), or give the workload as (model, x)") from None


def _reading(workload, copies):
    """func() computed on ``copies`` (float64) in place of the workload's params, whose data is restored after."""
    def func():
        originals = [p.data for p in workload.tensors]
        try:
            for param, replacement in zip(workload.tensors, copies):
                param.data = replacement
            output = workload.func()
        finally:
            for param, original in zip(workload.tensors, originals):
                param.data = original
        if output.dtype != torch.float64:
            raise ValueError(f"workload {workload.name!r}: its closure returns {output.dtype} when its params are "
                             "float64, so no float64 oracle can be taken; compute in the params' dtype "
                             "(x.to(w)), or give the workload as (model, x)")
        return output
    return func


def case(workload):
    """The conformance case of ``workload``, named after it."""
    if workload.model is not None:
        return Case(workload.name, f"your workload {workload.name} (a module)", _module_recipe(workload),
                    tags=("model", "workload"))
    _check_computes_in_float64(workload)
    return ClosureCase(workload.name, f"your workload {workload.name} (a closure)", build=None, tags=("workload",),
                       workload=workload)


def cells(workloads, strategy_names=None, dtypes=None, devices=None):
    """The conformance cells of ``workloads``: a module in each of ``dtypes`` (default float32 and
    float64) on ``devices``; a closure in its own dtype on its own device."""
    for workload in workloads:
        if workload.model is not None:
            yield from matrix_cells(strategy_names, [case(workload)], dtypes or list(DTYPES), devices)
            continue
        own = str(workload.dtype).removeprefix("torch.")
        if dtypes and list(dtypes) != [own]:
            raise ValueError(f"--dtypes {','.join(dtypes)}: workload {workload.name!r} is a closure over {own} "
                             "params and is checked in its own dtype only; give it as (model, x) to cast it")
        if devices and workload.device.type not in devices:
            raise ValueError(f"--devices {','.join(devices)}: workload {workload.name!r} is a closure on "
                             f"{workload.device.type} and is checked there only")
        yield from matrix_cells(strategy_names, [case(workload)], [own], [workload.device.type])
