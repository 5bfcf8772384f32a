"""What machine a result was made on: runs repeat step for step on the same kind of CPU only (issue 35: a study run
rerun on another CPU drifted after its first evaluations), so each run folder records it."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``), else what ``platform`` knows of it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_record() -> dict[str, Any]:
    """Plain data on this machine and the versions that decide a run's numbers: CPU, cores, Python, numpy, torch,
    Stable-Baselines3 and sb3-contrib."""
    import numpy
    import sb3_contrib
    import stable_baselines3
    import torch

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": str(numpy.__version__),
        "torch": str(torch.__version__),  # a str subclass, which safe YAML would refuse
        "stable_baselines3": str(stable_baselines3.__version__),
        "sb3_contrib": str(sb3_contrib.__version__),
    }
