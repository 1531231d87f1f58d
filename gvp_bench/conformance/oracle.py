"""The oracle: Jacobians by float64 central finite differences (or a case's analytic Jacobian).

It shares no code with any strategy: it perturbs each parameter element in place (under
no_grad, restored afterwards) and calls func.
"""

import functools

import torch

STEP = 1e-6          # central differences in float64: error about 1e-10 relative
NESTED_STEP = 1e-4   # for derivatives of finite-difference Jacobians (second-order checks)


def finite_difference_jacobian(func, params, step=STEP):
    """J of func() at params as an (output numel, total param numel) float64 matrix."""
    with torch.no_grad():
        outputs = func().numel()
        columns = []
        for param in params:
            flat = param.view(-1)
            for index in range(param.numel()):
                original = flat[index].item()
                flat[index] = original + step
                plus = func().reshape(-1).to(torch.float64, copy=True)
                flat[index] = original - step
                minus = func().reshape(-1).to(torch.float64, copy=True)
                flat[index] = original
                columns.append((plus - minus) / (2 * step))
    if not columns:
        return torch.zeros(outputs, 0, dtype=torch.float64)
    return torch.stack(columns, dim=1)


def case_jacobian(case, problem, step=STEP):
    """The case's Jacobian at the problem's params: analytic where the case gives it."""
    if case.analytic_jacobian is not None:
        with torch.no_grad():
            return case.analytic_jacobian(*problem.params).double().reshape(-1, sum(p.numel() for p in problem.params))
    return finite_difference_jacobian(problem.func, problem.params, step)


@functools.lru_cache(maxsize=None)
def oracle(case, device):
    """(J, output shape) for the case in float64 on device, cached."""
    problem = case.problem(torch.float64, device)
    with torch.no_grad():
        shape = tuple(problem.func().shape)
    return case_jacobian(case, problem).cpu(), shape


def gradient_of_contraction(case, device, contraction):
    """d<C, J(p)>/dp for a fixed (outputs, params) matrix C, by finite differences of finite-difference
    Jacobians, in float64: the oracle for second-order products (create_graph=True)."""
    problem = case.problem(torch.float64, device)
    contraction = contraction.to(device)

    def contracted():
        return (case_jacobian(case, problem, NESTED_STEP).to(device) * contraction).sum().reshape(1)

    return finite_difference_jacobian(contracted, problem.params, NESTED_STEP).reshape(-1).cpu()
