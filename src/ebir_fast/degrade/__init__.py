"""Batched degradation pipelines: Real-ESRGAN LQ, extreme ELQ, wild-IR and parameterised.

``create_degrader("elq")`` returns a :class:`Degrader`; ``degrader(images, generator)`` degrades a
batch, ``degrader.sample`` / ``degrader.apply`` draw and replay (also differentiably, for the
degrade-back loss). Presets are plain dataclass configs (``PRESETS[name]()`` builds a fresh one);
see docs in :mod:`ebir_fast.degrade.presets`.
"""

from __future__ import annotations

import torch  # noqa: F401  (doctest namespace)

from ebir_fast.degrade.base import Degrader
from ebir_fast.degrade.kernels import FAMILIES, KERNEL_SIZE, KernelConfig, sample_kernels
from ebir_fast.degrade.presets import SecondOrderConfig, StageConfig, elq, lq
from ebir_fast.degrade.second_order import SecondOrderDegrader, SecondOrderParams

PRESETS = {"lq": lq, "elq": elq}


def create_degrader(preset: str | SecondOrderConfig) -> Degrader:
    """The degrader for a preset name (``PRESETS``) or a config instance."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        preset = PRESETS[preset]()
    if isinstance(preset, SecondOrderConfig):
        return SecondOrderDegrader(preset)
    raise TypeError(
        f"preset: expected a preset name or a config dataclass, got {type(preset).__name__}"
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
