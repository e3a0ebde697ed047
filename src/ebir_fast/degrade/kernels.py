"""Random blur kernels, drawn per sample and built for the whole batch at once.

Every kernel is an odd ``k x k`` kernel (k from the config's ``sizes``) centred in a
``KERNEL_SIZE x KERNEL_SIZE`` (21x21) zero frame, so one batch is one ``[B, 21, 21]`` tensor; the
filter kernel skips the zero frame. Families (BasicSR's ``random_mixed_kernels`` semantics, written
here from the formulas in docs/degradation.md):

- Gaussian ``exp(-d2 / 2)``, generalized Gaussian ``exp(-d2^beta / 2)``, plateau
  ``1 / (d2^beta + 1)``, with ``d2 = x^T S^-1 x``, ``S = R(t) diag(sx^2, sy^2) R(t)^T``; "iso"
  variants have ``sy = sx, t = 0``.
- sinc (circular low-pass) ``wc J1(wc r) / (2 pi r)``, centre ``wc^2 / (4 pi)``; negative lobes.
- wild-IR extras: defocus (a disk), box, and motion (a line through the centre).

All kernels are normalised to sum 1 and equal their 180-degree rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

KERNEL_SIZE = 21
FAMILIES = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
    "defocus",
    "box",
    "motion",
)


@dataclass
class KernelConfig:
    """How one stage draws its blur kernel.

    Attributes:
        sizes: odd kernel sizes, drawn uniformly (7..21 in Real-ESRGAN).
        family_probs: probability of each family in ``FAMILIES`` (missing ones are 0); normalised.
        sigma_range: Gaussian standard deviations in pixels, for x and y independently (aniso).
        betag_range: generalized-Gaussian shape: U(lo, 1) or U(1, hi), each with p = 0.5.
        betap_range: plateau shape, drawn the same way.
        sinc_prob: probability of a sinc kernel instead of the mixed families.
    """

    sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    family_probs: dict[str, float] = field(
        default_factory=lambda: {
            "iso": 0.45,
            "aniso": 0.25,
            "generalized_iso": 0.12,
            "generalized_aniso": 0.03,
            "plateau_iso": 0.12,
            "plateau_aniso": 0.03,
        }
    )
    sigma_range: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1

    def __post_init__(self) -> None:
        bad = [k for k in self.sizes if k % 2 == 0 or not 1 <= k <= KERNEL_SIZE]
        if not self.sizes or bad:
            raise ValueError(
                f"sizes: expected odd kernel sizes in [1, {KERNEL_SIZE}], got {self.sizes}"
            )
        unknown = sorted(set(self.family_probs) - set(FAMILIES))
        if unknown:
            raise ValueError(f"family_probs: unknown families {unknown}; known: {FAMILIES}")
        if any(p < 0 for p in self.family_probs.values()) or sum(self.family_probs.values()) <= 0:
            raise ValueError(
                f"family_probs: expected non-negative, not all 0, got {self.family_probs}"
            )
        check_range("sigma_range", self.sigma_range, low=1e-3)
        check_range("betag_range", self.betag_range, low=1e-3)
        check_range("betap_range", self.betap_range, low=1e-3)
        check_prob("sinc_prob", self.sinc_prob)


def check_range(
    name: str, value: tuple[float, float], low: float = 0.0, high: float = math.inf
) -> None:
    """A (lo, hi) range with low <= lo <= hi <= high, or a ValueError naming it."""
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name}: expected (lo, hi) with {low} <= lo <= hi <= {high}, got {value}")


def check_prob(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value}")


# ---- drawing helpers (CPU generator, per sample) -----------------------------------------------


def uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    """``[n]`` float64 draws from U(lo, hi)."""
    return lo + (hi - lo) * torch.rand(n, dtype=torch.float64, generator=generator)


def choice(n: int, probs, generator: torch.Generator | None) -> torch.Tensor:
    """``[n]`` int64 indices drawn with the given (unnormalised) probabilities."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    return torch.multinomial(p / p.sum(), n, replacement=True, generator=generator)


def coin(n: int, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """``[n]`` bool, True with probability p."""
    return torch.rand(n, dtype=torch.float64, generator=generator) < p


def split_beta(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    """Shape parameters: U(lo, 1) with p = 0.5, else U(1, hi) (Real-ESRGAN's rule)."""
    low_side = coin(n, 0.5, generator)
    a = uniform(n, min(lo, 1.0), 1.0, generator)
    b = uniform(n, 1.0, max(hi, 1.0), generator)
    return torch.where(low_side, a, b)


def _grid() -> tuple[torch.Tensor, torch.Tensor]:
    ax = torch.arange(KERNEL_SIZE, dtype=torch.float64) - KERNEL_SIZE // 2
    return ax.view(1, -1, 1).expand(1, KERNEL_SIZE, KERNEL_SIZE), ax.view(1, 1, -1).expand(
        1, KERNEL_SIZE, KERNEL_SIZE
    )


def _support(sizes: torch.Tensor) -> torch.Tensor:
    """``[B, 21, 21]`` bool: the centred ``k x k`` square of each sample."""
    yy, xx = _grid()
    half = (sizes.to(torch.float64) // 2).view(-1, 1, 1)
    return (yy.abs() <= half) & (xx.abs() <= half)


def _normalise(k: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    k = torch.where(support, k, torch.zeros((), dtype=k.dtype))
    return k / k.sum(dim=(1, 2), keepdim=True)


# ---- kernel builders (batched; every argument is a [B] tensor) ---------------------------------


def anisotropic_kernels(
    sizes: torch.Tensor,  # [B] odd int
    sigma_x: torch.Tensor,  # [B]
    sigma_y: torch.Tensor,  # [B]
    theta: torch.Tensor,  # [B] radians
    beta: torch.Tensor,  # [B]; 1 with kind 0 is the plain Gaussian
    kind: torch.Tensor,  # [B] int: 0 generalized Gaussian exp(-d2^beta/2), 1 plateau
) -> torch.Tensor:  # [B, 21, 21] float64
    """Gaussian-family kernels with covariance ``R(theta) diag(sx^2, sy^2) R(theta)^T``."""
    yy, xx = _grid()
    sigma_x, sigma_y, theta, beta = (t.double() for t in (sigma_x, sigma_y, theta, beta))
    c, s = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
    # Coordinates in the rotated frame: d2 = u^2 / sx^2 + v^2 / sy^2.
    u = c * xx + s * yy
    v = -s * xx + c * yy
    d2 = (u / sigma_x.view(-1, 1, 1)) ** 2 + (v / sigma_y.view(-1, 1, 1)) ** 2
    powered = d2 ** beta.view(-1, 1, 1)
    k = torch.where(kind.view(-1, 1, 1) == 0, torch.exp(-0.5 * powered), 1.0 / (powered + 1.0))
    return _normalise(k, _support(sizes))


def sinc_kernels(
    sizes: torch.Tensor,  # [B] odd int
    cutoff: torch.Tensor,  # [B] omega_c in radians per pixel
) -> torch.Tensor:  # [B, 21, 21] float64
    """Circular low-pass (2D sinc) kernels; the centre before normalisation is ``wc^2 / (4 pi)``."""
    yy, xx = _grid()
    r = torch.sqrt(xx * xx + yy * yy)
    wc = cutoff.double().view(-1, 1, 1)
    safe_r = torch.where(r > 0, r, torch.ones((), dtype=r.dtype))
    k = wc * torch.special.bessel_j1(wc * safe_r) / (2 * math.pi * safe_r)
    k = torch.where(r > 0, k, wc * wc / (4 * math.pi))
    return _normalise(k, _support(sizes))


def defocus_kernels(sizes: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Disk (defocus) kernels of the given radius, anti-aliased by 4x4 supersampling."""
    yy, xx = _grid()
    offsets = (torch.arange(4, dtype=torch.float64) + 0.5) / 4 - 0.5
    sy = (yy.unsqueeze(-1).unsqueeze(-1) + offsets.view(-1, 1)).expand(*yy.shape, 4, 4)
    sx = (xx.unsqueeze(-1).unsqueeze(-1) + offsets.view(1, -1)).expand(*xx.shape, 4, 4)
    inside = (sx * sx + sy * sy) <= radius.view(-1, 1, 1, 1, 1) ** 2
    k = inside.to(torch.float64).mean(dim=(-1, -2))
    return _normalise(k, _support(sizes))


def box_kernels(sizes: torch.Tensor) -> torch.Tensor:
    """Uniform ``k x k`` kernels."""
    return _normalise(torch.ones(1, KERNEL_SIZE, KERNEL_SIZE, dtype=torch.float64), _support(sizes))


def motion_kernels(sizes: torch.Tensor, length: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Linear motion blur: a segment of ``length`` pixels through the centre at angle ``theta``.

    The weight of a pixel is its coverage by a 1-pixel-wide segment (``1 - distance``, clipped),
    so the kernel is symmetric about the centre like the camera shake it models.
    """
    yy, xx = _grid()
    length, theta = length.double(), theta.double()
    c, s = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
    along = c * xx + s * yy
    across = (-s * xx + c * yy).abs()
    half = 0.5 * length.view(-1, 1, 1)
    k = (1.0 - across).clamp_min(0) * (half + 0.5 - along.abs()).clamp(0, 1)
    return _normalise(k, _support(sizes))


def pulse_kernels(batch: int) -> torch.Tensor:
    """``[B, 21, 21]`` identity kernels."""
    k = torch.zeros(batch, KERNEL_SIZE, KERNEL_SIZE, dtype=torch.float64)
    k[:, KERNEL_SIZE // 2, KERNEL_SIZE // 2] = 1.0
    return k


def sample_sinc_cutoff(sizes: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Real-ESRGAN's cutoff rule: U(pi/3, pi) below size 13, else U(pi/5, pi)."""
    n = sizes.numel()
    small = uniform(n, math.pi / 3, math.pi, generator)
    large = uniform(n, math.pi / 5, math.pi, generator)
    return torch.where(sizes < 13, small, large)


def sample_kernels(
    batch: int, config: KernelConfig, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``batch`` kernels: (``[B, 21, 21]`` float64, ``[B]`` bool "is sinc").

    Every parameter is drawn for every sample (a fixed number of draws per call), so the stream of
    random numbers does not depend on which family each sample got.
    """
    sizes = torch.as_tensor(config.sizes)[
        torch.randint(len(config.sizes), (batch,), generator=generator)
    ]
    family = choice(batch, [config.family_probs.get(f, 0.0) for f in FAMILIES], generator)
    lo, hi = config.sigma_range
    sigma_x = uniform(batch, lo, hi, generator)
    sigma_y = uniform(batch, lo, hi, generator)
    theta = uniform(batch, -math.pi, math.pi, generator)
    betag = split_beta(batch, *config.betag_range, generator)
    betap = split_beta(batch, *config.betap_range, generator)
    # Defocus radius and motion length scale with the kernel size, from 30% to all of it.
    radius = uniform(batch, 0.3, 1.0, generator) * (sizes.to(torch.float64) / 2)
    length = uniform(batch, 0.3, 1.0, generator) * sizes.to(torch.float64)
    is_sinc = coin(batch, config.sinc_prob, generator)
    cutoff = sample_sinc_cutoff(sizes, generator)

    name = [FAMILIES[i] for i in family.tolist()]
    iso = torch.tensor(["iso" in f for f in name], dtype=torch.bool)
    generalized = torch.tensor([f.startswith("generalized") for f in name], dtype=torch.bool)
    plateau = torch.tensor([f.startswith("plateau") for f in name], dtype=torch.bool)
    sigma_y = torch.where(iso, sigma_x, sigma_y)
    theta_g = torch.where(iso, torch.zeros_like(theta), theta)
    beta = torch.where(generalized, betag, torch.where(plateau, betap, torch.ones_like(betag)))
    kernels = anisotropic_kernels(sizes, sigma_x, sigma_y, theta_g, beta, plateau.long())
    fam = family.view(-1, 1, 1)
    kernels = torch.where(fam == FAMILIES.index("defocus"), defocus_kernels(sizes, radius), kernels)
    kernels = torch.where(fam == FAMILIES.index("box"), box_kernels(sizes), kernels)
    kernels = torch.where(
        fam == FAMILIES.index("motion"), motion_kernels(sizes, length, theta), kernels
    )
    kernels = torch.where(is_sinc.view(-1, 1, 1), sinc_kernels(sizes, cutoff), kernels)
    return kernels, is_sinc
