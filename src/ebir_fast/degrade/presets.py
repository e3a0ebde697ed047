"""Degradation presets as plain dataclasses: every value is documented where it is set.

``lq``: Real-ESRGAN x4plus / OSEDiff ``params_realesrgan.yml`` (the LQ manifold the frozen
restorer g was trained on), x4 and resized back. ``elq``: ebir-fast's extreme preset (values and
rationale below). ``wild``: DA-CLIP's wild-IR pipeline. ``param``: SPIRE's parameterised pipeline
with restoration prompts. A custom pipeline is an instance of one of the config classes, e.g.
``dataclasses.replace(lq(), scale_range=(2.0, 2.0))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ebir_fast.degrade.kernels import KernelConfig, check_prob, check_range
from ebir_fast.degrade.ragged import RESIZE_MODES


@dataclass
class StageConfig:
    """One stage of the second-order pipeline: blur -> resize -> noise -> JPEG.

    Attributes:
        kernel: how the blur kernel is drawn.
        blur_prob: probability of blurring at all (Real-ESRGAN's ``second_blur_prob`` for stage 2).
        resize_prob: probabilities of (up, down, keep).
        resize_range: (r0, r1): up-scales draw U(1, r1), down-scales U(r0, 1).
        gaussian_noise_prob: Gaussian noise with this probability, else Poisson noise.
        noise_range: Gaussian sigma in 0..255 units.
        poisson_scale_range: multiplier of the Poisson noise.
        gray_noise_prob: probability that a sample's noise is the same in all channels.
        jpeg_range: JPEG quality, a float per sample.
    """

    kernel: KernelConfig = field(default_factory=KernelConfig)
    blur_prob: float = 1.0
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)

    def __post_init__(self) -> None:
        check_prob("blur_prob", self.blur_prob)
        if len(self.resize_prob) != 3 or min(self.resize_prob) < 0 or sum(self.resize_prob) <= 0:
            raise ValueError(
                f"resize_prob: expected (up, down, keep) non-negative, not all 0, got "
                f"{self.resize_prob}"
            )
        check_range("resize_range", self.resize_range, low=1e-3)
        if not self.resize_range[0] <= 1.0 <= self.resize_range[1]:
            raise ValueError(f"resize_range: expected (r0 <= 1, r1 >= 1), got {self.resize_range}")
        check_prob("gaussian_noise_prob", self.gaussian_noise_prob)
        check_range("noise_range", self.noise_range)
        check_range("poisson_scale_range", self.poisson_scale_range)
        check_prob("gray_noise_prob", self.gray_noise_prob)
        check_range("jpeg_range", self.jpeg_range, low=1.0, high=100.0)


def _stage2_kernel(**overrides) -> KernelConfig:
    return KernelConfig(**{"sigma_range": (0.2, 1.5), **overrides})


@dataclass
class SecondOrderConfig:
    """Real-ESRGAN's second-order pipeline (docs/degradation.md section 4).

    Attributes:
        stage1, stage2: the two stages; stage 2 resizes relative to the original size / scale.
        final_sinc_prob: probability of the final sinc filter (else the identity).
        scale_range: overall down-scale, drawn per sample from U(lo, hi) (lo == hi: fixed).
        resize_back: resize the result back to the input size (random mode) and round again, as
            the paper's LQ / ELQ images are the restorers' 512x512 inputs. Without it the scale
            must be fixed so the batch keeps one size.
        resize_modes: interpolation modes drawn uniformly for every resize.
    """

    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(
        default_factory=lambda: StageConfig(
            kernel=_stage2_kernel(),
            blur_prob=0.8,
            resize_prob=(0.3, 0.4, 0.3),
            resize_range=(0.3, 1.2),
            noise_range=(1.0, 25.0),
            poisson_scale_range=(0.05, 2.5),
        )
    )
    final_sinc_prob: float = 0.8
    scale_range: tuple[float, float] = (4.0, 4.0)
    resize_back: bool = True
    resize_modes: tuple[str, ...] = RESIZE_MODES

    def __post_init__(self) -> None:
        check_prob("final_sinc_prob", self.final_sinc_prob)
        check_range("scale_range", self.scale_range, low=1.0)
        if not self.resize_back and self.scale_range[0] != self.scale_range[1]:
            raise ValueError(
                f"scale_range: a random scale needs resize_back=True (the batch must keep one "
                f"size), got {self.scale_range} with resize_back=False"
            )
        bad = [m for m in self.resize_modes if m not in RESIZE_MODES]
        if not self.resize_modes or bad:
            raise ValueError(
                f"resize_modes: expected some of {RESIZE_MODES}, got {self.resize_modes}"
            )


def lq() -> SecondOrderConfig:
    """The LQ manifold: Real-ESRGAN x4plus defaults (OSEDiff's ``params_realesrgan.yml``).

    x4 down on a 512 crop, then back to 512 with a random mode, rounded to 8 bits; no USM.
    """
    return SecondOrderConfig()


def elq() -> SecondOrderConfig:
    """ebir-fast's extreme (ELQ) preset.

    The EBIR paper widens the resize, blur, noise and JPEG ranges of Real-ESRGAN without giving
    numbers. Ours keep the two-stage structure (so ELQ is a superset of the LQ manifold the
    projector maps onto) and reach the severity of the published single-stage "severe" sets:
    CodeFormer (sigma 1-15, down 4-30, noise 0-20, JPEG 30-80) and DiffBIR (sigma 0.1-12, down
    1-12, noise 0-15, JPEG 30-100). Changes against ``lq``:

    - blur sigma 0.2-6 (stage 2: 0.2-3), generalized beta 0.5-6: twice the widest LQ blur; with
      the 21x21 support a sigma of 6 is close to the largest Gaussian it can hold (+-1.7 sigma).
    - resize 0.08-1.5 (stage 2: 0.15-1.2): down to ~1/12 in stage 1, with the overall scale 4-8
      a total down-scale of up to ~100x before the final resize (CodeFormer goes to 30x).
    - Gaussian noise sigma 1-50 (stage 2: 1-40) in 0..255 units, Poisson scale 0.05-5: about
      1.7x the LQ noise, beyond CodeFormer/DiffBIR's 20/15 since it is applied twice at low
      resolution.
    - JPEG quality 10-95 in both stages: q = 10 is the lowest quality seen in the wild; our tables
      are clamped to libjpeg's [1, 255] so it is real-JPEG severe, not BasicSR's harsher version.
    - scale 4-8, resized back to the input size like ``lq``.
    """
    stage1 = StageConfig(
        kernel=KernelConfig(sigma_range=(0.2, 6.0), betag_range=(0.5, 6.0)),
        resize_range=(0.08, 1.5),
        noise_range=(1.0, 50.0),
        poisson_scale_range=(0.05, 5.0),
        jpeg_range=(10.0, 95.0),
    )
    stage2 = StageConfig(
        kernel=_stage2_kernel(sigma_range=(0.2, 3.0), betag_range=(0.5, 6.0)),
        blur_prob=0.8,
        resize_prob=(0.3, 0.4, 0.3),
        resize_range=(0.15, 1.2),
        noise_range=(1.0, 40.0),
        poisson_scale_range=(0.05, 5.0),
        jpeg_range=(10.0, 95.0),
    )
    return SecondOrderConfig(stage1=stage1, stage2=stage2, scale_range=(4.0, 8.0))
