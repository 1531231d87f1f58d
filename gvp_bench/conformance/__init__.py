"""The conformance harness: named cases, an oracle that is none of the strategies, and one check
per (strategy, case, function, dtype, device) cell. Used by tests/ and ``gvp-bench conformance``."""

from .cases import CASES, FUNC_FUNCTIONS, MODEL_FUNCTIONS, case_by_name
from .checks import Outcome, run_cell
from .matrix import cells, pivot, support_matrix

__all__ = ["CASES", "FUNC_FUNCTIONS", "MODEL_FUNCTIONS", "case_by_name", "Outcome", "run_cell", "cells", "pivot",
           "support_matrix"]
