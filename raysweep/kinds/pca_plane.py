"""The optimisation path on its PCA plane (Li, Xu, Taylor, Studer & Goldstein 2018, §7 and Fig 9; their
projection.py) — a whole sweep kind in one file, on the planes' plumbing (kinds/planes.py):

    pca_plane   θ_T + a·d1 + b·d2, d1 and d2 the path's top two principal directions

The matrix of θ_t − θ_T over a replicate's checkpoints but the last, centred as scikit-learn's PCA centres it;
its top two principal directions from the centred Gram matrix (float64, checkpoints²; tested against numpy's
SVD), each sign fixed so that its largest entry is positive and each scaled to ‖θ_T − θ_0‖, so the path spans
about a unit along d1. The fraction of the path's variance each explains is stored with them and reported as
the surface table's `kind = "axes"` row (a and b), on the figures' axes too.
"""
from __future__ import annotations

from raysweep.kinds.planes import plane_kind


def pca_directions(store, job, sweep, h: str, k: int, endpoints: tuple, params: list[str]) -> dict:
    """{"center.<n>": θ_T, "d1.<n>", "d2.<n>", "evr": the two fractions of variance}. The differences θ_t − θ_T
    are held as one float32 matrix (checkpoints × parameters: digits' MLP 0.5 MB; ResNet-50 with 124 checkpoints
    12.6 GB)."""
    import numpy as np
    import torch

    from raysweep.io.checkpoints import load_tensors

    thetaT = load_tensors(store, endpoints[-1].path, endpoints[-1].sha256)
    flatT = np.concatenate([thetaT[n].double().reshape(-1).numpy() for n in params])
    m = np.stack([np.concatenate([t[n].double().reshape(-1).numpy() for n in params]) - flatT
                  for t in (load_tensors(store, e.path, e.sha256) for e in endpoints[:-1])]).astype(np.float32)
    centred = m - m.mean(0, dtype=np.float64).astype(np.float32)
    gram = centred.astype(np.float64) @ centred.astype(np.float64).T
    w, u = np.linalg.eigh(gram)
    order = np.argsort(w)[::-1][:2]
    dirs = [(centred.T.astype(np.float64) @ u[:, j]) / np.sqrt(max(w[j], 1e-300)) for j in order]
    dirs = [d * np.sign(d[np.argmax(np.abs(d))]) for d in dirs]
    scale = float(np.linalg.norm(m[0]))  # ‖θ_0 − θ_T‖: the path spans about a unit along d1
    out = {f"center.{n}": t for n, t in thetaT.items()}
    for name, d in zip(("d1", "d2"), dirs):
        start = 0
        for n in params:
            size = thetaT[n].numel()
            out[f"{name}.{n}"] = torch.from_numpy(d[start:start + size] * scale).reshape(thetaT[n].shape).float()
            start += size
    out["evr"] = torch.tensor([w[j] / w.sum() for j in order], dtype=torch.float64)
    return out


plane_kind("pca_plane", "PCA", "Li-fig9",
           "the plane through θ_T of the trajectory's top two principal directions, each scaled to ‖θ_T − θ_0‖ (Li "
           "et al. 2018, Fig 9; the axes say how much of the path's variance each explains)", {"θ_T": (0.0, 0.0)},
           module=__name__, directions=pca_directions, of_path=True)
