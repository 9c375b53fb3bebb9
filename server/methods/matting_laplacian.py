"""The matting Laplacian of closed-form matting (Levin, Lischinski and Weiss,
"A Closed-Form Solution to Natural Image Matting", PAMI 2008) as a 5 x 5
stencil field, and a multigrid-preconditioned conjugate-gradient solver for
alpha where a trimap leaves it unknown. Torch throughout: the same code runs
on a GPU.

In every 3 x 3 window w_k alpha is assumed to be an affine function of
colour. With u_j = I_j - mu_k the colours of a window relative to its mean
and D_k = (Sigma_k + eps / 9 U)^-1 its regularised inverse covariance,

    L_ij = sum over the windows k holding i and j of
           (delta_ij - (1 + u_i^T D_k u_j) / 9)

so pixel i couples to the 5 x 5 pixels around it. The 25 coefficients of
every pixel are computed once, window by window (81 pairs of window
positions), which costs about what 25 products of the matrix-free form would
and makes every later product 25 multiply-adds. Only windows wholly inside
the image count, as in the paper.

The solver (`solve`) fixes the known pixels (rows of the identity), then runs
conjugate gradients preconditioned by one multigrid V-cycle: Galerkin coarse
operators P^T A P with bilinear P, found by probing the finer operator with
25 interleaved combs (the coarse stencil is again 5 x 5), damped-Jacobi
smoothing, and an exact solve on the coarsest grid (at most COARSEST^2
pixels, inverted densely once: sweeps there would cost a few milliseconds of
per-call overhead each, most of a cycle). Jacobi-
preconditioned CG needs about 900 steps for a band 10 px wide where this
needs a few dozen.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPSILON = 1e-6     # regularisation of each window's colour covariance
RADIUS = 1         # windows are 3 x 3
REACH = 2 * RADIUS          # stencil radius: pixels two apart share a window
SIDE = 2 * REACH + 1        # 5
OFFSETS = [(dy, dx) for dy in range(-REACH, REACH + 1) for dx in range(-REACH, REACH + 1)]
CENTRE = len(OFFSETS) // 2

SMOOTHING = 2          # damped-Jacobi sweeps before and after each coarse correction
DAMPING = 0.7
COARSEST = 24          # a grid no larger than this on either side is the bottom


# -- the stencil ------------------------------------------------------------------

def _inverse_sym3(c: list[torch.Tensor]) -> list[torch.Tensor]:
    """Inverses of symmetric 3 x 3 matrices given as their six fields (xx,
    xy, xz, yy, yz, zz); same layout out."""
    xx, xy, xz, yy, yz, zz = c
    i_xx = yy * zz - yz * yz
    i_xy = xz * yz - xy * zz
    i_xz = xy * yz - xz * yy
    i_yy = xx * zz - xz * xz
    i_yz = xy * xz - xx * yz
    i_zz = xx * yy - xy * xy
    det = xx * i_xx + xy * i_xy + xz * i_xz
    return [v / det for v in (i_xx, i_xy, i_xz, i_yy, i_yz, i_zz)]


def laplacian(image: torch.Tensor, eps: float = EPSILON,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The matting Laplacian of image (1, 3, h, w) as a stencil field (25, h,
    w): entry o of pixel i is L[i, i + OFFSETS[o]] (zero where i + o is
    outside the image). Window statistics in float64: a covariance is a
    small difference of large sums where colour is nearly flat."""
    x = image[0].double()
    _, h, w = x.shape
    size = 2 * RADIUS + 1
    count = size * size
    out = torch.zeros(len(OFFSETS), h, w, dtype=torch.float64, device=image.device)
    if h < size or w < size:
        return out.to(dtype)
    hk, wk = h - 2 * RADIUS, w - 2 * RADIUS     # window centres wholly inside

    def at(field, dy, dx):
        """field at the pixels (k + (dy, dx)) for every window centre k."""
        return field[..., RADIUS + dy:RADIUS + dy + hk, RADIUS + dx:RADIUS + dx + wk]

    positions = [(dy, dx) for dy in range(-RADIUS, RADIUS + 1) for dx in range(-RADIUS, RADIUS + 1)]
    mean = sum(at(x, dy, dx) for dy, dx in positions) / count
    u = [at(x, dy, dx) - mean for dy, dx in positions]           # centred colours
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    cov = [sum(v[i] * v[j] for v in u) / count for i, j in pairs]
    for d in (0, 3, 5):
        cov[d] = cov[d] + eps / count
    xx, xy, xz, yy, yz, zz = _inverse_sym3(cov)
    # D u_b for every window position b
    du = [torch.stack([xx * v[0] + xy * v[1] + xz * v[2], xy * v[0] + yy * v[1] + yz * v[2],
                       xz * v[0] + yz * v[1] + zz * v[2]]) for v in u]
    index = {o: n for n, o in enumerate(OFFSETS)}
    for a, (ay, ax) in enumerate(positions):
        for b, (by, bx) in enumerate(positions):
            g = (1.0 + (u[a] * du[b]).sum(0)) / count
            entry = (1.0 if a == b else 0.0) - g
            o = index[(by - ay, bx - ax)]
            out[o, RADIUS + ay:RADIUS + ay + hk, RADIUS + ax:RADIUS + ax + wk] += entry
    return out.to(dtype)


def apply(stencil: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """stencil (25, h, w) times x (h, w)."""
    h, w = x.shape
    padded = F.pad(x, (REACH, REACH, REACH, REACH))
    out = stencil[CENTRE] * x
    for o, (dy, dx) in enumerate(OFFSETS):
        if o != CENTRE:
            out.addcmul_(stencil[o], padded[REACH + dy:REACH + dy + h, REACH + dx:REACH + dx + w])
    return out


def dirichlet(stencil: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """The operator on the free pixels (free: (h, w) bool), with the fixed
    ones as rows of the identity and no coupling to them: symmetric, and
    positive definite when every free region touches a fixed pixel."""
    h, w = free.shape
    f = free.to(stencil.dtype)
    padded = F.pad(f, (REACH, REACH, REACH, REACH))
    out = torch.empty_like(stencil)
    for o, (dy, dx) in enumerate(OFFSETS):
        out[o] = stencil[o] * f * padded[REACH + dy:REACH + dy + h, REACH + dx:REACH + dx + w]
    out[CENTRE] += 1 - f
    return out


# -- multigrid ----------------------------------------------------------------------

def _prolong(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear prolongation from the coarse grid (pixel i at fine 2i)."""
    h, w = shape
    hc, wc = x.shape
    out = torch.zeros(h + 1, w + 1, dtype=x.dtype, device=x.device)
    out[0:2 * hc:2, 0:2 * wc:2] = x
    # odd rows and columns: means of their even neighbours
    out[1:2 * hc - 1:2, 0:2 * wc:2] = 0.5 * (x[:-1] + x[1:])
    out[:, 1:2 * wc - 1:2] = 0.5 * (out[:, 0:2 * wc - 2:2] + out[:, 2:2 * wc:2])
    return out[:h, :w]


def _restrict(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The transpose of _prolong."""
    h, w = x.shape
    hc, wc = shape
    p = torch.zeros(2 * hc + 1, 2 * wc + 1, dtype=x.dtype, device=x.device)
    p[:h, :w] = x
    # columns: even + half of each odd neighbour
    cols = p[:, 0:2 * wc:2].clone()
    cols[:, :-1] += 0.5 * p[:, 1:2 * wc - 1:2]
    cols[:, 1:] += 0.5 * p[:, 1:2 * wc - 1:2]
    rows = cols[0:2 * hc:2].clone()
    rows[:-1] += 0.5 * cols[1:2 * hc - 1:2]
    rows[1:] += 0.5 * cols[1:2 * hc - 1:2]
    return rows


def _coarse_shape(shape: tuple[int, int]) -> tuple[int, int]:
    return ((shape[0] + 1) // 2, (shape[1] + 1) // 2)


def galerkin(stencil: torch.Tensor) -> torch.Tensor:
    """P^T A P as a coarse stencil field, by probing with 25 combs: a comb
    holds every coarse pixel whose (row, column) mod 5 is one pair, and no
    two of its pixels are within each other's 5 x 5 reach."""
    shape = tuple(stencil.shape[1:])
    hc, wc = _coarse_shape(shape)
    out = torch.zeros(len(OFFSETS), hc, wc, dtype=stencil.dtype, device=stencil.device)
    rows = torch.arange(hc, device=stencil.device)
    cols = torch.arange(wc, device=stencil.device)
    for py in range(SIDE):
        for px in range(SIDE):
            comb = ((rows[:, None] % SIDE == py) & (cols[None, :] % SIDE == px)).to(stencil.dtype)
            response = _restrict(apply(stencil, _prolong(comb, shape)), (hc, wc))
            # coarse pixel i sees the comb's tooth at i + o for exactly one o
            for o, (dy, dx) in enumerate(OFFSETS):
                # rows i with (i + dy) % 5 == py hold entry o
                hit = (((rows[:, None] + dy) % SIDE == py) & ((cols[None, :] + dx) % SIDE == px))
                inside = ((rows[:, None] + dy >= 0) & (rows[:, None] + dy < hc)
                          & (cols[None, :] + dx >= 0) & (cols[None, :] + dx < wc))
                out[o] = torch.where(hit & inside, response, out[o])
    return out


def dense(stencil: torch.Tensor) -> torch.Tensor:
    """The stencil field (25, h, w) as a dense (h w, h w) matrix."""
    _, h, w = stencil.shape
    n = h * w
    out = torch.zeros(n, n, dtype=stencil.dtype, device=stencil.device)
    rows = torch.arange(n, device=stencil.device).view(h, w)
    ys, xs = torch.meshgrid(torch.arange(h, device=stencil.device),
                            torch.arange(w, device=stencil.device), indexing="ij")
    for o, (dy, dx) in enumerate(OFFSETS):
        inside = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
        columns = (ys + dy).clamp(0, h - 1) * w + (xs + dx).clamp(0, w - 1)
        out[rows[inside], columns[inside]] = stencil[o][inside]
    return out


class Multigrid:
    """One V-cycle as a preconditioner for the operator `stencil` (already
    restricted to its free pixels by `dirichlet`)."""

    def __init__(self, stencil: torch.Tensor):
        self.levels = [stencil]
        while max(self.levels[-1].shape[1:]) > COARSEST:
            coarse = galerkin(self.levels[-1])
            # a coarse pixel whose whole footprint is fixed has no row left
            empty = coarse[CENTRE] <= 1e-12
            coarse[CENTRE] = torch.where(empty, torch.ones_like(coarse[CENTRE]), coarse[CENTRE])
            self.levels.append(coarse)
        self.inverse_diagonal = [1.0 / s[CENTRE] for s in self.levels]
        bottom = dense(self.levels[-1].double())
        # symmetric in exact arithmetic; the pseudo-inverse forgives a
        # singular bottom (a free region touching no fixed pixel)
        self.bottom = torch.linalg.pinv(0.5 * (bottom + bottom.T), hermitian=True).to(
            self.levels[-1].dtype)

    def _smooth(self, level: int, x: torch.Tensor, b: torch.Tensor, sweeps: int) -> torch.Tensor:
        s, d = self.levels[level], self.inverse_diagonal[level]
        for _ in range(sweeps):
            x = x + DAMPING * d * (b - apply(s, x))
        return x

    def cycle(self, b: torch.Tensor, level: int = 0) -> torch.Tensor:
        if level == len(self.levels) - 1:
            return (self.bottom @ b.reshape(-1)).view(b.shape)
        x = self._smooth(level, torch.zeros_like(b), b, SMOOTHING)
        residual = b - apply(self.levels[level], x)
        coarse_shape = tuple(self.levels[level + 1].shape[1:])
        correction = self.cycle(_restrict(residual, coarse_shape), level + 1)
        x = x + _prolong(correction, tuple(b.shape))
        return self._smooth(level, x, b, SMOOTHING)


# -- solving ----------------------------------------------------------------------

def solve(image: torch.Tensor, unknown: torch.Tensor, alpha: torch.Tensor,
          weight: torch.Tensor | None = None, target: torch.Tensor | None = None,
          eps: float = EPSILON, iterations: int = 100, tolerance: float = 1e-4,
          dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, dict]:
    """Alpha over the `unknown` pixels (1, 1, h, w bool) of `image` (1, 3, h,
    w): the minimiser of alpha^T L alpha + sum weight (alpha - target)^2
    with alpha fixed to `alpha` (1, 1, h, w) elsewhere. `alpha`'s unknown
    pixels are the starting guess. Stops when the residual falls below
    `tolerance` times the right-hand side or after `iterations` steps.
    Returns alpha, clipped to [0, 1], and what the solver did."""
    info = {"unknown": int(unknown.sum()), "iterations": 0}
    if info["unknown"] == 0:
        return alpha.clamp(0, 1), info
    # Only the box around the unknown pixels, with the reach of the stencil
    # and of its windows, takes part.
    rows = torch.nonzero(unknown[0, 0].any(1))[:, 0]
    cols = torch.nonzero(unknown[0, 0].any(0))[:, 0]
    h, w = unknown.shape[-2:]
    top, bottom = max(int(rows[0]) - 2 * REACH, 0), min(int(rows[-1]) + 1 + 2 * REACH, h)
    left, right = max(int(cols[0]) - 2 * REACH, 0), min(int(cols[-1]) + 1 + 2 * REACH, w)
    box = (Ellipsis, slice(top, bottom), slice(left, right))
    if (bottom - top, right - left) != (h, w):
        inner, inner_info = solve(image[box], unknown[box], alpha[box],
                                  None if weight is None else weight[box],
                                  None if target is None else target[box],
                                  eps, iterations, tolerance, dtype)
        out = alpha.clamp(0, 1).clone()
        out[box] = inner
        return out, inner_info
    free = unknown[0, 0]
    a = alpha[0, 0].to(dtype)
    full = laplacian(image, eps, dtype)
    f = free.to(dtype)
    # L_UU x = -L_UK alpha_K (+ weight (target - x) on the unknown pixels)
    rhs = -apply(full, a * (1 - f)) * f
    op = dirichlet(full, free)
    del full
    if weight is not None:
        w = weight[0, 0].to(dtype) * f
        rhs = rhs + w * target[0, 0].to(dtype)
        op[CENTRE] += w
    preconditioner = Multigrid(op)
    x = a * f
    r = rhs - apply(op, x)
    z = preconditioner.cycle(r) * f
    p = z
    rz = (r * z).sum()
    limit = tolerance * float(rhs.norm()) + 1e-12
    for step in range(iterations):
        if float(r.norm()) <= limit:
            break
        q = apply(op, p)
        curvature = (p * q).sum()
        if not float(curvature) > 0:
            break   # rounding: the residual is as small as this precision allows
        step_size = rz / curvature
        x = x + step_size * p
        r = r - step_size * q
        z = preconditioner.cycle(r) * f
        rz_next = (r * z).sum()
        p = z + (rz_next / rz) * p
        rz = rz_next
        info["iterations"] = step + 1
    info["residual"] = float(r.norm()) / (float(rhs.norm()) + 1e-12)
    out = torch.where(free, x, a).clamp(0, 1)
    return out[None, None].to(alpha.dtype), info
