"""The support matrix: every (strategy, case, function, dtype, device) cell and its outcome.

An unsupported cell is ``declared`` when the strategy's ``unsupported`` class data names a feature
the cell exercises and the reason has that declaration's words (gvp_bench.support); an
undeclared one is a regression, marked UNDECLARED in the pivot.
"""

import pandas as pd
import torch

from ..registry import get_strategy, strategies
from ..second_order import hvp_strategies
from ..support import explains
from .cases import CASES, HVP_FUNCTIONS
from .checks import run_cell

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def available_devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def cells(strategy_names=None, cases=None, dtypes=("float32", "float64"), devices=None):
    """The cells to check, as (strategy, case, function, dtype name, device) tuples."""
    for device in devices or available_devices():
        for dtype in dtypes:
            for case in cases or CASES:
                for function in case.functions:
                    for strategy in strategies():
                        if strategy_names is None or strategy in strategy_names:
                            yield strategy, case, function, dtype, device
                for function in HVP_FUNCTIONS if "scalar" in case.tags else ():
                    for strategy in hvp_strategies():
                        if strategy_names is None or strategy in strategy_names:
                            yield strategy, case, function, dtype, device


def support_matrix(cell_list, progress=None):
    """Run the cells; a DataFrame with one row per cell: its outcome and detail."""
    rows = []
    for strategy, case, function, dtype, device in cell_list:
        outcome = run_cell(strategy, case, function, DTYPES[dtype], device)
        # a workload of your own (tagged "workload"): what it exercises is not known, so no refusal is a regression;
        # the HVP strategies (gvp_bench.second_order) are functions with no class data to declare refusals in
        declared = outcome.status == "unsupported" and (
            "workload" in case.tags or strategy in hvp_strategies()
            or explains(get_strategy(strategy), case.exercises(function, device), outcome.detail))
        rows.append(dict(strategy=strategy, case=case.name, function=function, dtype=dtype, device=device,
                         status=outcome.status, detail=outcome.detail, declared=declared))
        if progress is not None:
            progress.update(1)
    return pd.DataFrame(rows, columns=["strategy", "case", "function", "dtype", "device", "status", "detail",
                                       "declared"])


def pivot(frame):
    """Rows (device, dtype, case, function), a column per strategy, each cell pass / FAIL / unsupported
    (declared by the strategy) / UNDECLARED (unsupported, but not declared: a regression) / refused (a typed
    error every strategy must raise, the case's ``refused``)."""
    marks = frame.assign(mark=frame.status.map({"pass": "pass", "fail": "FAIL", "unsupported": "unsupported",
                                                 "refused": "refused"}))
    marks.loc[(marks.status == "unsupported") & ~marks.declared.astype(bool), "mark"] = "UNDECLARED"
    table = marks.pivot_table(index=["device", "dtype", "case", "function"], columns="strategy", values="mark",
                              aggfunc="first", sort=False)
    table.columns.name = None
    return table
