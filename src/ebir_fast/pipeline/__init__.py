"""The restoration pipeline: two stages with Look Forward Once, colour fix, tiling."""

from ebir_fast.pipeline.color import adain_color_fix, color_fix, wavelet_color_fix
from ebir_fast.pipeline.ebir import EBIRPipeline, PipelineOutput

__all__ = [
    "EBIRPipeline",
    "PipelineOutput",
    "adain_color_fix",
    "color_fix",
    "wavelet_color_fix",
]
