"""Which random operations a call runs: those that draw from a default generator.

Strategies that cannot reproduce func's own random numbers (a dropout mask) use it to refuse
such a func with a reason, instead of answering with another mask.
"""

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .functional import call_with
from .process_state import random_state_kept


def _generator_states():
    """The default generators' states: the CPU's, and the current CUDA device's once CUDA is in use."""
    states = [torch.get_rng_state()]
    if torch.cuda.is_initialized():
        states.append(torch.cuda.get_rng_state())
    return states


class RandomOperations(TorchDispatchMode):
    """Records the operations a call runs that draw random numbers: those tagged
    nondeterministic_seeded that move a default generator (attention with dropout_p=0 does not)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if torch.Tag.nondeterministic_seeded not in func.tags:
            return func(*args, **(kwargs or {}))
        before = _generator_states()
        result = func(*args, **(kwargs or {}))
        if not all(torch.equal(b, a) for b, a in zip(before, _generator_states())):
            self.seen.append(func.name())
        return result


def random_operations(func, params):
    """The names of the random operations one plain call of func runs (no graph; the random state is
    left as it was)."""
    with random_state_kept(params), torch.no_grad(), RandomOperations() as random:
        call_with(func, params, params)
    return sorted(set(random.seen))
