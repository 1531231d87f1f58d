"""The machine fingerprint written in every results file's header: what the numbers were measured on.

Every field is a scalar (a results table carries each as a ``machine_<field>`` column). On CUDA:
``gpu`` (device 0's name, which resume and auto match on), ``gpus`` (every device, with its
compute capability and memory), ``gpu_driver`` (from ``nvidia-smi``, None without it), and on
every machine the float32 precision settings (``tf32``, ``fp32_precision``;
gvp_bench.precision), so that a run with TF32 is told apart from a strict one.
"""

import datetime
import functools
import os
import pathlib
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

import torch

from ..precision import fp32_state


@functools.cache
def cpu_model():
    """This CPU's model name, as the fingerprint records it."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args):
    """Output of a git command in this package's checkout, or None outside one."""
    here = pathlib.Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def gpus():
    """Every CUDA device: ``"name (sm 9.0, 139.8 GiB)"``, joined by ``"; "``; None without CUDA."""
    if not torch.cuda.is_available():
        return None
    described = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        described.append(f"{properties.name} (sm {properties.major}.{properties.minor}, "
                         f"{properties.total_memory / 2 ** 30:.1f} GiB)")
    return "; ".join(described)


def gpu_driver():
    """The NVIDIA driver's version as nvidia-smi reports it, or None (no CUDA, no nvidia-smi)."""
    if not torch.cuda.is_available():
        return None
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    versions = sorted(set(done.stdout.split())) if done.returncode == 0 else []
    return ", ".join(versions) or None


def _package_version():
    try:
        return version("gvp-bench")
    except PackageNotFoundError:
        return None


def fingerprint(threads):
    """The machine, software and date of a run; ``threads`` is torch's intra-op thread count for it."""
    cuda = torch.cuda.is_available()
    status = _git("status", "--porcelain", "--untracked-files=no")
    precision = fp32_state()
    return dict(
        cpu=cpu_model(),
        cpu_cores=os.cpu_count(),
        cpu_usable=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        gpu=torch.cuda.get_device_name(0) if cuda else None,
        gpu_count=torch.cuda.device_count() if cuda else 0,
        gpus=gpus(),
        gpu_driver=gpu_driver(),
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if cuda else None,
        torch=torch.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        gvp_bench=_package_version(),
        git_commit=_git("rev-parse", "HEAD"),
        git_dirty=None if status is None else bool(status),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        threads=threads,
        tf32=precision["tf32"],
        fp32_precision=", ".join(f"{name}={value}" for name, value in precision.items() if name != "tf32"),
    )
