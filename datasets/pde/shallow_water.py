"""Rotating shallow-water equations on the sphere: the data of the Spherical FNO paper.

Equations (vorticity-divergence form; Williamson et al., J. Comput. Phys. 102, 1992, eqs. 2-4 and
Hack & Jakob, NCAR TN-343, 1992)
    d zeta / dt = -div((zeta + f) u)
    d delta / dt = k . curl((zeta + f) u) - Laplacian(Phi + |u|^2 / 2)
    d Phi / dt   = -div(Phi u)

on a sphere of radius ``a`` rotating at ``Omega``: ``u = (u, v)`` the horizontal wind (east, north),
``zeta = k . curl u`` the relative vorticity, ``delta = div u`` the divergence, ``Phi = g h`` the
geopotential of the fluid depth ``h`` and ``f = 2 Omega sin(latitude)`` the Coriolis parameter. The
wind follows from ``(zeta, delta)`` through a stream function and a velocity potential,
``Laplacian psi = zeta``, ``Laplacian chi = delta``, ``u = k x grad psi + grad chi``. Mass is
``int Phi dA / g`` and is conserved: the ``Phi`` tendency is a divergence.

Space: the spectral transform method (Orszag 1970; Eliasen et al. 1970)
    The state is kept as spherical-harmonic coefficients of degree ``l < L`` and order ``m <= l``
    (torch-harmonics' orthonormal real SHT, ``L = ceil(nlat / 3)``, torch-harmonics' ``PdeDataset``).
    Each step the fields and the wind are synthesised on the grid, the quadratic products
    ``(zeta + f) u``, ``Phi u``, ``Phi + |u|^2/2`` are formed there, and their divergence / curl /
    Laplacian are taken in spectral space (``Laplacian Y_lm = -l (l + 1) / a^2 Y_lm``; vector SHT
    for div and curl). ``3 (L - 1) <= nlat - 1``, so the quadratic terms are projected back without
    aliasing (Orszag's 3/2 rule for the Clenshaw-Curtis grid).

Time: third-order Adams-Bashforth with hyperdiffusion, as torch-harmonics'
``ShallowWaterSolver.timestep`` (and pyspharm's example it follows)
    ``U^{n+1} = U^n + h (23 F^n - 16 F^{n-1} + 5 F^{n-2}) / 12`` on the coefficients ``U``, started
    with ``F^{-1} = F^{-2} = F^0`` (forward Euler) and ``F^{-1} = F^1`` at the second step. After
    every step vorticity and divergence are multiplied by
    ``exp(-h / 7200 s * (l (l + 1) / ((L - 1) L))^4)``: an 8th-order hyperdiffusion that damps the
    highest degree with an e-folding time of 2 hours and leaves the large scales alone (``Phi`` is
    not damped, so mass stays exact). ``simulate`` cuts ``[0, t]`` into equal steps no longer than
    ``dt_solver`` and starts the scheme afresh, as ``PdeDataset`` does for every sample.

Grid and shapes
    Equiangular with both poles (torch-harmonics' ``"equiangular"``, Clenshaw-Curtis weights):
    row ``i`` at colatitude ``pi i / (nlat - 1)`` (north pole first), column ``j`` at longitude
    ``2 pi j / nlon``. States are ``[batch, 3, nlat, nlon]``. The data generator uses
    ``nlon = 2 (nlat - 1)`` (equal spacing in latitude and longitude), so taking every ``r``-th row
    and column of a ``(nlat, nlon)`` grid gives the ``((nlat - 1)/r + 1, nlon / r)`` grid exactly.

Units of the state (all three dimensionless; the paper's initial law gives the three channels the
same spectrum, so they enter a relative L2 error with comparable weight)
    channel 0  ``(Phi - g H) / (g A)``: the height anomaly in units of ``A = 120 m`` about the mean
               depth ``H = 10 km``;
    channel 1  ``zeta a / U``;   channel 2  ``delta a / U``,
    with the velocity scale ``U = 0.2 sqrt(g H)`` (Mach 0.2 of the gravity-wave speed, the paper's
    random initial condition). ``to_physical`` / ``from_physical`` convert to SI ``(Phi, zeta,
    delta)``. (torch-harmonics' ``PdeDataset`` keeps SI units and divides each channel by the mean
    and standard deviation of one sample; our operator models normalise their channels themselves.)

The SFNO protocol (Bonev et al., "Spherical Fourier Neural Operators: Learning Stable Dynamics on
the Sphere", ICML 2023, sec. 5.1; torch-harmonics' ``PdeDataset``): Earth's radius and rotation,
``g = 9.80616``, ``H = 10 km``; random initial conditions ``random_initial_condition`` (Mach 0.2);
``x`` = the state, ``y`` = the state one hour (3600 s) later, solver step 150 s (24 steps); grid
256 x 512 in the paper. ``torch_harmonics`` (0.7.4) supplies the transforms and is imported only when
a function here needs it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

__all__ = ["Planet", "EARTH", "band_limit", "random_initial_condition", "simulate", "to_physical", "from_physical",
           "williamson_steady_zonal_flow", "longitudes_per_latitude", "INSTALL_HINT"]

INSTALL_HINT = "pip install --no-build-isolation torch-harmonics==0.7.4"

# torch-harmonics' random initial condition draws its coefficients with this fixed degree cut-off
# (``llimit = 120``), whatever the grid: the coefficient variance is 4 pi / (120 * 121)
_DRAW_DEGREES = 120


@dataclass(frozen=True)
class Planet:
    """Physical constants (SI) and the scales of the dimensionless state (torch-harmonics' defaults)."""

    radius: float = 6.37122e6  # a [m]
    omega: float = 7.292e-5  # Omega [1/s]
    gravity: float = 9.80616  # g [m/s^2]
    mean_depth: float = 10.0e3  # H [m]
    height_scale: float = 120.0  # A [m] (torch-harmonics' ``hamp``)
    mach: float = 0.2  # U = mach * sqrt(g H), the velocity scale of vorticity and divergence

    @property
    def velocity_scale(self) -> float:
        return self.mach * math.sqrt(self.gravity * self.mean_depth)


EARTH = Planet()


def _torch_harmonics():
    try:
        import torch_harmonics
    except ImportError as error:
        raise ImportError(f"datasets.pde.shallow_water needs torch-harmonics: {INSTALL_HINT} ({error})") from None
    return torch_harmonics


@functools.lru_cache(maxsize=8)
def _synthesis(nlat: int, nlon: int):
    """torch-harmonics' inverse SHT of the kept degrees on the CPU (float64), built once per grid."""
    lmax = band_limit(nlat)
    return _torch_harmonics().InverseRealSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid="equiangular", csphase=False)


def band_limit(nlat: int) -> int:
    """``L = ceil(nlat / 3)``: the number of degrees (``0 .. L-1``) the solver keeps on ``nlat`` rows."""
    return math.ceil(nlat / 3)


def longitudes_per_latitude(nlat: int) -> int:
    """``nlon = 2 (nlat - 1)``: the data grid with equal latitude and longitude spacing ``pi / (nlat - 1)``."""
    return 2 * (nlat - 1)


def _check_grid(nlat, nlon, name="grid"):
    for label, value in (("nlat", nlat), ("nlon", nlon)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: {label} must be an int, got {value!r}")
    if nlat < 3:
        raise ValueError(f"{name}: nlat must be >= 3 (both poles and the equator), got {nlat}")
    lmax = band_limit(nlat)
    if nlon < 2 * lmax - 1:
        raise ValueError(f"{name}: nlon = {nlon} cannot resolve the orders m < {lmax} of nlat = {nlat}; "
                         f"it needs nlon >= {2 * lmax - 1} (the data grid uses nlon = 2 (nlat - 1))")


def _check_planet(planet):
    if not isinstance(planet, Planet):
        raise ValueError(f"planet must be a shallow_water.Planet, got {type(planet).__name__}")
    for name in ("radius", "gravity", "mean_depth", "height_scale", "mach"):
        value = getattr(planet, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"planet.{name} must be a finite positive number, got {value!r}")
    if not (isinstance(planet.omega, (int, float)) and math.isfinite(planet.omega)):
        raise ValueError(f"planet.omega must be a finite number, got {planet.omega!r}")


class _Spectral:
    """Transforms and spectral operators of one ``(nlat, nlon)`` grid, in float64 on ``device``."""

    def __init__(self, nlat: int, nlon: int, planet: Planet, device):
        th = _torch_harmonics()
        lmax = band_limit(nlat)
        options = dict(lmax=lmax, mmax=lmax, grid="equiangular", csphase=False)
        self.sht = th.RealSHT(nlat, nlon, **options).to(device)
        self.isht = th.InverseRealSHT(nlat, nlon, **options).to(device)
        self.vsht = th.RealVectorSHT(nlat, nlon, **options)
        # torch-harmonics 0.7.4 folds 1 / (l (l + 1)) into the analysis weights in float32 (an integer
        # tensor divided under the default dtype): a 3e-8 relative error that would make an exact steady
        # state drift. Put the float64 factor back.
        degree = torch.arange(lmax, dtype=torch.float64)
        exact = torch.where(degree > 0, 1.0 / (degree * (degree + 1)).clamp(min=1), 1.0)
        with torch.no_grad():
            self.vsht.weights *= (exact / exact.float().double())[:, None]
        self.vsht = self.vsht.to(device)
        self.ivsht = th.InverseRealVectorSHT(nlat, nlon, **options).to(device)
        a = planet.radius
        degree = torch.arange(lmax, dtype=torch.float64, device=device)[:, None].expand(lmax, lmax)
        self.laplacian = -degree * (degree + 1) / a ** 2  # [l, m]
        self.inverse_laplacian = torch.where(degree > 0, -a ** 2 / (degree * (degree + 1)).clamp(min=1), 0.0)
        colatitude = torch.linspace(0, math.pi, nlat, dtype=torch.float64, device=device)
        self.coriolis = (2 * planet.omega * torch.cos(colatitude))[:, None]  # 2 Omega sin(latitude): [nlat, 1]
        self.radius = a
        self.lmax = lmax
        self.shape = (nlat, nlon)

    def hyperdiffusion(self, h: float, time: float) -> torch.Tensor:
        """``exp(-h / time (l (l + 1) / ((L - 1) L))^4)``: ``[l, m]`` (1 for ``L = 1``)."""
        if self.lmax < 2:
            return torch.ones_like(self.laplacian)
        return torch.exp(-h / time * (self.laplacian / self.laplacian[-1, 0]) ** 4)

    def divergence_curl(self, vector: torch.Tensor) -> torch.Tensor:
        """Grid vector field ``[..., 2 (east, north), nlat, nlon]`` -> coefficients of
        ``(k . curl, div)``: ``[..., 2, L, L]``."""
        return self.laplacian * self.radius * self.vsht(vector)

    def wind(self, vorticity_divergence: torch.Tensor) -> torch.Tensor:
        """Coefficients of ``(zeta, delta)`` ``[..., 2, L, L]`` -> grid wind ``(u, v)`` ``[..., 2, nlat, nlon]``."""
        return self.ivsht(self.inverse_laplacian * vorticity_divergence / self.radius)

    def tendency(self, state: torch.Tensor) -> torch.Tensor:
        """``dU/dt`` of the coefficients ``U = (Phi, zeta, delta)``: ``[batch, 3, L, L]`` complex."""
        grid = self.isht(state)  # [b, 3, nlat, nlon]
        wind = self.wind(state[:, 1:])  # [b, 2, nlat, nlon]
        phi, absolute_vorticity = grid[:, 0:1], grid[:, 1:2] + self.coriolis
        # one vector transform for both fluxes: (zeta + f) u and Phi u
        fluxes = self.divergence_curl(torch.stack((wind * absolute_vorticity, wind * phi), dim=1))
        energy = self.sht(grid[:, 0] + 0.5 * (wind ** 2).sum(dim=1))
        return torch.stack((-fluxes[:, 1, 1],  # -div(Phi u)
                            -fluxes[:, 0, 1],  # -div((zeta + f) u)
                            fluxes[:, 0, 0] - self.laplacian * energy), dim=1)  # k.curl((zeta+f) u) - Lap(E)


def from_physical(phi: torch.Tensor, vorticity: torch.Tensor, divergence: torch.Tensor,
                  planet: Planet = EARTH) -> torch.Tensor:
    """SI ``Phi [m^2/s^2], zeta [1/s], delta [1/s]`` (each ``[batch, nlat, nlon]``) -> the
    dimensionless state ``[batch, 3, nlat, nlon]`` (module docstring)."""
    g, scale = planet.gravity, planet.radius / planet.velocity_scale
    return torch.stack(((phi - g * planet.mean_depth) / (g * planet.height_scale), vorticity * scale,
                        divergence * scale), dim=1)


def to_physical(state: torch.Tensor, planet: Planet = EARTH) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dimensionless state ``[batch, 3, nlat, nlon]`` -> SI ``(Phi, zeta, delta)``, each ``[batch, nlat, nlon]``."""
    g, scale = planet.gravity, planet.velocity_scale / planet.radius
    return (g * planet.mean_depth + g * planet.height_scale * state[:, 0], state[:, 1] * scale, state[:, 2] * scale)


def random_initial_condition(batch: int, nlat: int, nlon: int, generator: torch.Generator, mach: float = 0.2,
                             planet: Planet = EARTH) -> torch.Tensor:
    """The paper's random initial states ``[batch, 3, nlat, nlon]`` (float64, dimensionless units).

    torch-harmonics' ``ShallowWaterSolver.random_initial_condition(mach)`` draws, for each of
    ``(Phi, zeta, delta)``, the coefficients ``c_lm ~ sqrt(4 pi / (120 * 121)) CN(0, 1)`` of every
    kept degree ``l < L = ceil(nlat / 3)`` and order ``m <= l`` (a white spectrum, complex normal:
    real and imaginary parts of variance 1/2), and sets ``Phi = g H + g A c^Phi``,
    ``(zeta, delta) = mach sqrt(g H) / a c^(zeta, delta)``. It draws from torch's global generator;
    here the same complex normals are drawn from ``generator`` (one ``[3, L, L]`` block per sample,
    in the same order, so ``batch = 1`` reproduces torch-harmonics after ``torch.manual_seed`` with
    the generator's seed). Two changes, neither of which alters the flow: the imaginary parts of the
    ``m = 0`` coefficients, invisible on the grid, are dropped, and so are the ``l = 0`` coefficients of
    vorticity and divergence (torch-harmonics draws them too: constant offsets that no wind has, which
    its solver carries along unchanged). In the units of this module channel 0 is ``SHT^-1 c^Phi`` and channels 1, 2 are
    ``(mach / planet.mach) SHT^-1 c``.
    """
    for label, value in (("batch", batch),):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}")
    _check_grid(nlat, nlon)
    _check_planet(planet)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not (isinstance(mach, (int, float)) and math.isfinite(mach) and mach > 0):
        raise ValueError(f"mach must be a finite positive number, got {mach!r}")
    lmax = band_limit(nlat)
    # one [3, L, L] draw per sample, as torch-harmonics (torch fills one large draw in another order)
    draws = torch.stack([torch.randn(3, lmax, lmax, dtype=torch.complex128, generator=generator,
                                     device=generator.device) for _ in range(batch)])
    coefficients = math.sqrt(4 * math.pi / (_DRAW_DEGREES * (_DRAW_DEGREES + 1))) * torch.tril(draws.cpu())
    coefficients[:, 1:] *= mach / planet.mach
    coefficients[:, 1:, 0, 0] = 0  # a curl and a divergence have zero mean on the sphere
    return _synthesis(nlat, nlon)(coefficients)


def williamson_steady_zonal_flow(nlat: int, nlon: int, u0: float = 2 * math.pi * 6.37122e6 / (12 * 86400),
                                 gh0: float = 2.94e4, planet: Planet = EARTH) -> torch.Tensor:
    """Williamson et al. (1992) test case 2 with ``alpha = 0``: the geostrophically balanced zonal flow
    ``u = u0 cos(latitude), v = 0``, ``Phi = g h0 - (a Omega u0 + u0^2 / 2) sin^2(latitude)``, so
    ``zeta = 2 u0 sin(latitude) / a`` and ``delta = 0``: a steady solution. ``[1, 3, nlat, nlon]``
    in the dimensionless units (float64)."""
    _check_grid(nlat, nlon)
    _check_planet(planet)
    sine = torch.cos(torch.linspace(0, math.pi, nlat, dtype=torch.float64))[:, None].expand(nlat, nlon)
    phi = gh0 - (planet.radius * planet.omega * u0 + 0.5 * u0 ** 2) * sine ** 2
    vorticity = 2 * u0 * sine / planet.radius
    return from_physical(phi[None], vorticity[None], torch.zeros_like(vorticity)[None], planet)


def simulate(state0: torch.Tensor, t: float, dt_solver: float = 150.0, planet: Planet = EARTH,
             hyperdiffusion_time: float = 7200.0) -> torch.Tensor:
    """The state at time ``t`` (seconds) from ``state0: [batch, 3, nlat, nlon]`` (dimensionless units).

    ``nlat, nlon`` are read from ``state0`` (any ``nlon >= 2 ceil(nlat / 3) - 1``; the data use
    ``2 (nlat - 1)``). ``[0, t]`` is cut into the fewest equal steps no longer than ``dt_solver``
    (the paper: 3600 s in 24 steps of 150 s). ``state0`` is first projected onto the kept degrees
    ``l < ceil(nlat / 3)`` (the random initial states already lie there). Runs in float64 on
    ``state0``'s device and returns ``[batch, 3, nlat, nlon]`` float64. ``hyperdiffusion_time``: the
    e-folding time in seconds of the highest kept degree (torch-harmonics: 7200 s; ``math.inf``: none). Raises ``ValueError`` for bad
    input and ``RuntimeError`` when the solution stops being finite (``dt_solver`` too large).
    """
    if not isinstance(state0, torch.Tensor) or not state0.is_floating_point():
        raise ValueError(f"state0 must be a real floating-point torch.Tensor, got {type(state0).__name__}")
    if state0.ndim != 4 or state0.shape[0] < 1 or state0.shape[1] != 3:
        raise ValueError(f"state0 must have shape [batch, 3 (height, vorticity, divergence), nlat, nlon], "
                         f"got {tuple(state0.shape)}")
    nlat, nlon = state0.shape[-2:]
    _check_grid(nlat, nlon, name="state0")
    if not torch.isfinite(state0).all():
        raise ValueError("state0 contains NaN or infinite values")
    if not (isinstance(hyperdiffusion_time, (int, float)) and hyperdiffusion_time > 0):
        raise ValueError(f"hyperdiffusion_time must be a positive number of seconds (inf: none), "
                         f"got {hyperdiffusion_time!r}")
    for label, value in (("t", t), ("dt_solver", dt_solver)):
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ValueError(f"{label} must be a finite number, got {value!r}")
    if t < 0:
        raise ValueError(f"t must be >= 0, got {t}")
    if dt_solver <= 0:
        raise ValueError(f"dt_solver must be positive, got {dt_solver}")
    _check_planet(planet)

    state0 = state0.to(torch.float64)
    solver = _Spectral(nlat, nlon, planet, state0.device)
    phi, vorticity, divergence = to_physical(state0, planet)
    spectrum = solver.sht(torch.stack((phi, vorticity, divergence), dim=1))  # [b, 3, L, L]
    steps = 0 if t == 0 else max(1, math.ceil(t / dt_solver - 1e-9))
    if steps:
        h = t / steps
        damping = solver.hyperdiffusion(h, hyperdiffusion_time)
        last = before_last = None  # F^{n-1}, F^{n-2}
        for step in range(steps):
            rate = solver.tendency(spectrum)
            # torch-harmonics' start-up: (F0, F0, F0) at the first step, (F1, F0, F1) at the second
            now, old = (rate, rate) if step == 0 else (last, rate) if step == 1 else (last, before_last)
            spectrum = spectrum + h * ((23 / 12) * rate - (16 / 12) * now + (5 / 12) * old)
            last, before_last = rate, last
            spectrum[:, 1:] = damping * spectrum[:, 1:]
    grid = solver.isht(spectrum)
    if not torch.isfinite(grid).all():
        raise RuntimeError(f"shallow-water solution is no longer finite at t = {t} s: reduce dt_solver = {dt_solver}")
    return from_physical(grid[:, 0], grid[:, 1], grid[:, 2], planet)
