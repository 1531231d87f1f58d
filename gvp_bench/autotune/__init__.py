"""How ``strategy="auto"`` chooses: measured results for this machine, else calibration on the call.

- :mod:`.config`: the settings (``configure_auto``, environment variables) and the
  process-wide cache of choices per workload signature;
- :mod:`.signature`: the workload signature and size;
- :mod:`.candidates`: which strategies are worth trying (work and memory estimates);
- :mod:`.measured`: the best measured strategy of the nearest workload in results files;
- :mod:`.calibration`: timing the candidates briefly, without side effects.

The strategy itself, which puts these together, is ``implementations/auto.py``.
"""

from .config import AutoSettings, configure_auto, settings

__all__ = ["AutoSettings", "configure_auto", "settings"]
