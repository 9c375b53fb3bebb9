"""The matting Laplacian stencil, its multigrid and the solver, against the
definitions written out densely on small images."""
import numpy as np
import pytest
import torch

from server.methods import matting_laplacian as ml


def dense_laplacian(image: np.ndarray, eps: float) -> np.ndarray:
    """Levin et al.'s L built entry by entry from its definition (3 x 3
    windows wholly inside the image)."""
    h, w, _ = image.shape
    n = h * w
    out = np.zeros((n, n))
    for cy in range(1, h - 1):
        for cx in range(1, w - 1):
            idx = [(cy + dy) * w + cx + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
            colours = image.reshape(n, 3)[idx]
            mu = colours.mean(0)
            cov = (colours - mu).T @ (colours - mu) / 9 + eps / 9 * np.eye(3)
            inv = np.linalg.inv(cov)
            u = colours - mu
            g = (1 + u @ inv @ u.T) / 9
            out[np.ix_(idx, idx)] += np.eye(9) - g
    return out


def stencil_matrix(stencil: torch.Tensor) -> np.ndarray:
    _, h, w = stencil.shape
    out = np.zeros((h * w, h * w))
    for i in range(h * w):
        e = torch.zeros(h * w, dtype=stencil.dtype)
        e[i] = 1
        out[:, i] = ml.apply(stencil, e.view(h, w)).numpy().ravel()
    return out


@pytest.fixture
def image():
    rng = np.random.default_rng(3)
    x = rng.random((9, 11, 3))
    x[:4, :4] = 0.5            # a flat patch: the covariance is eps alone there
    return x


def tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(2, 0, 1)[None]


def test_stencil_is_the_matting_laplacian(image):
    for eps in (1e-3, 1e-6):
        stencil = ml.laplacian(tensor(image), eps, torch.float64)
        expected = dense_laplacian(image, eps)
        assert np.allclose(stencil_matrix(stencil), expected, atol=1e-6 * np.abs(expected).max())


def test_constants_are_in_its_null_space(image):
    stencil = ml.laplacian(tensor(image), 1e-6, torch.float32)
    ones = torch.ones(image.shape[:2])
    assert ml.apply(stencil, ones).abs().max() < 1e-3


def test_galerkin_is_restriction_times_operator_times_prolongation(image):
    stencil = ml.laplacian(tensor(image), 1e-3, torch.float64)
    h, w = image.shape[:2]
    hc, wc = (h + 1) // 2, (w + 1) // 2
    prolong = np.zeros((h * w, hc * wc))
    for i in range(hc * wc):
        e = torch.zeros(hc * wc, dtype=torch.float64)
        e[i] = 1
        prolong[:, i] = ml._prolong(e.view(hc, wc), (h, w)).numpy().ravel()
    restrict = np.zeros((hc * wc, h * w))
    for i in range(h * w):
        e = torch.zeros(h * w, dtype=torch.float64)
        e[i] = 1
        restrict[:, i] = ml._restrict(e.view(h, w), (hc, wc)).numpy().ravel()
    assert np.array_equal(restrict, prolong.T)
    coarse = stencil_matrix(ml.galerkin(stencil))
    assert np.allclose(coarse, prolong.T @ stencil_matrix(stencil) @ prolong, atol=1e-9)


def test_solve_matches_a_direct_solve():
    rng = np.random.default_rng(0)
    h, w = 40, 52
    image = rng.random((h, w, 3)) * 0.3
    image[:, w // 2:] += 0.6                     # an edge down the middle
    unknown = np.zeros((h, w), bool)
    unknown[5:35, 10:45] = True
    alpha = np.zeros((h, w))
    alpha[:, w // 2:] = 1.0
    weight = np.where(unknown, 0.01, 0.0)
    target = (np.arange(w)[None, :] >= w // 2 + 3) * np.ones((h, 1))
    eps = 1e-5
    dense = dense_laplacian(image, eps)
    u = unknown.ravel()
    matrix = dense[np.ix_(u, u)] + np.diag(weight.ravel()[u])
    rhs = -dense[np.ix_(u, ~u)] @ alpha.ravel()[~u] + (weight * target).ravel()[u]
    expected = alpha.ravel().copy()
    expected[u] = np.linalg.solve(matrix, rhs)
    expected = np.clip(expected, 0, 1).reshape(h, w)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a))[None, None]
    start = t(np.where(unknown, 0.5, alpha)).float()
    solved, info = ml.solve(tensor(image).float(), t(unknown), start, t(weight).float(),
                            t(target).float(), eps, iterations=200, tolerance=1e-6)
    assert info["iterations"] < 60          # multigrid, not hundreds of Jacobi steps
    assert np.abs(solved[0, 0].numpy() - expected).max() < 2e-3
    # known pixels are left exactly as they were
    assert np.array_equal(solved[0, 0].numpy()[~unknown], alpha[~unknown].astype(np.float32))


def test_nothing_unknown_changes_nothing():
    image = torch.rand(1, 3, 8, 8)
    alpha = (torch.rand(1, 1, 8, 8) > 0.5).float()
    out, info = ml.solve(image, torch.zeros(1, 1, 8, 8, dtype=torch.bool), alpha)
    assert torch.equal(out, alpha) and info["unknown"] == 0
