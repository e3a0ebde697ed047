"""Batched degradation pipelines: Real-ESRGAN LQ, extreme ELQ, wild-IR and parameterised.

``create_degrader("elq")`` returns a :class:`Degrader`; ``degrader(images, generator)`` degrades a
batch, ``degrader.sample`` / ``degrader.apply`` draw and replay (also differentiably, for the
degrade-back loss). Presets are plain dataclass configs (``PRESETS[name]()`` builds a fresh one);
their values are documented in :mod:`ebir_fast.degrade.presets`, :mod:`~ebir_fast.degrade.wild`
and :mod:`~ebir_fast.degrade.param`.
"""

from __future__ import annotations

from ebir_fast.degrade.base import Degrader
from ebir_fast.degrade.kernels import FAMILIES, KERNEL_SIZE, KernelConfig, sample_kernels
from ebir_fast.degrade.param import ParamConfig, ParamDegrader, ParamParams, param
from ebir_fast.degrade.presets import SecondOrderConfig, StageConfig, elq, lq
from ebir_fast.degrade.second_order import SecondOrderDegrader, SecondOrderParams
from ebir_fast.degrade.wild import WildConfig, WildDegrader, WildParams, wild

PRESETS = {"lq": lq, "elq": elq, "wild": wild, "param": param}
_DEGRADERS = {
    SecondOrderConfig: SecondOrderDegrader,
    WildConfig: WildDegrader,
    ParamConfig: ParamDegrader,
}


def create_degrader(preset: str | SecondOrderConfig | WildConfig | ParamConfig) -> Degrader:
    """The degrader for a preset name (``PRESETS``) or a config instance.

    Example:
        >>> import torch
        >>> degrader = create_degrader("elq")
        >>> degrader(torch.rand(2, 3, 64, 64), torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 64, 64])
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        preset = PRESETS[preset]()
    for config_type, degrader in _DEGRADERS.items():
        if isinstance(preset, config_type):
            return degrader(preset)
    raise TypeError(
        f"preset: expected a preset name ({', '.join(PRESETS)}) or a config dataclass "
        f"({', '.join(t.__name__ for t in _DEGRADERS)}), got {type(preset).__name__}"
    )


__all__ = [
    "FAMILIES",
    "KERNEL_SIZE",
    "PRESETS",
    "Degrader",
    "KernelConfig",
    "ParamConfig",
    "ParamDegrader",
    "ParamParams",
    "SecondOrderConfig",
    "SecondOrderDegrader",
    "SecondOrderParams",
    "StageConfig",
    "WildConfig",
    "WildDegrader",
    "WildParams",
    "create_degrader",
    "elq",
    "lq",
    "param",
    "sample_kernels",
    "wild",
]
