"""Memory budgets: how many bytes a product may take, given as bytes or as a fraction of what is free.

Used by the chunked strategies (gvp_bench.chunking) and by ``auto``'s candidate filters.
"""

import math
import os
import time

import torch

DEFAULT_MEMORY_FRACTION = 0.5


def check_memory_budget(budget):
    """budget as given (bytes, an int; or a fraction of free memory, a float <= 1), or ValueError naming it."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0:
        raise ValueError(f"memory_budget must be a positive number of bytes (int) or a fraction (float <= 1); "
                         f"got {budget!r}")
    if isinstance(budget, float) and budget > 1:
        raise ValueError(f"memory_budget as a float is a fraction of free memory and must be <= 1; got {budget!r} "
                         "(give bytes as an int)")
    return budget


_recent_free = {}  # device -> (time.monotonic() of the reading, bytes free)


def free_memory(device, max_age_s=0.0):
    """Bytes free on the device (on CUDA: free to the driver, plus reserved by torch's caching allocator but
    not allocated; for the CPU: MemAvailable), or None where it cannot be told; a reading
    at most ``max_age_s`` old may be reused (reading MemAvailable costs a file read)."""
    now = time.monotonic()
    recent = _recent_free.get(device)
    if recent is not None and now - recent[0] <= max_age_s:
        return recent[1]
    free = _read_free_memory(device)
    _recent_free[device] = (now, free)
    return free


def _read_free_memory(device):
    if device.type == "cuda":
        # What the driver has free plus what torch's caching allocator has reserved and holds no tensor in:
        # the driver's reading alone shrinks with every block the allocator keeps cached after earlier work
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return torch.cuda.mem_get_info(device)[0] + cached
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def budget_bytes(memory_budget, device, max_age_s=0.0):
    """The budget in bytes: an int setting as it is, a fraction of what is free (inf if unknown), read
    at most ``max_age_s`` ago."""
    if isinstance(memory_budget, int):
        return memory_budget
    free = free_memory(device, max_age_s)
    return math.inf if free is None else memory_budget * free
