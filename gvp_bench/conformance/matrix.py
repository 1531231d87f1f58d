"""The support matrix: every (strategy, case, function, dtype, device) cell and its outcome."""

import pandas as pd
import torch

from ..registry import strategies
from ..second_order import hvp_strategies
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
        rows.append(dict(strategy=strategy, case=case.name, function=function, dtype=dtype, device=device,
                         status=outcome.status, detail=outcome.detail))
        if progress is not None:
            progress.update(1)
    return pd.DataFrame(rows, columns=["strategy", "case", "function", "dtype", "device", "status", "detail"])


def pivot(frame):
    """Rows (device, dtype, case, function), a column per strategy, each cell pass / FAIL / unsupported."""
    marks = frame.assign(mark=frame.status.map({"pass": "pass", "fail": "FAIL", "unsupported": "unsupported",
                                                     "refused": "refused"}))
    table = marks.pivot_table(index=["device", "dtype", "case", "function"], columns="strategy", values="mark",
                              aggfunc="first", sort=False)
    table.columns.name = None
    return table
