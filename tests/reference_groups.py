"""The permutation groups written out by hand for the chains (MLPs, the CIFAR VGG-16) and the CIFAR
ResNets: the reference that the groups raysweep reads from a model's graph (evaluate/graph_spec.py) are
tested against. Test code only."""
from __future__ import annotations

from torch import nn

from raysweep.models import CifarResNet, CifarVGG, Maxout

WEIGHTED = (nn.Linear, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def chain(model: nn.Module) -> list[tuple[str, list[str]]]:
    """[(weighted layer's name, names of the BatchNorms on its outputs)] in forward order."""
    if not isinstance(model, (nn.Sequential, CifarVGG)) or any(isinstance(m, Maxout) for m in model.modules()):
        raise ValueError(f"the hand-written reference covers chains (MLPs, the CIFAR VGG-16) and the CIFAR "
                         f"ResNets only, not {type(model).__name__}")
    out: list[tuple[str, list[str]]] = []
    for name, m in model.named_modules():
        if isinstance(m, WEIGHTED):
            out.append((name, []))
        elif isinstance(m, NORMS):
            if not out:
                raise ValueError(f"{name}: a BatchNorm before any weighted layer cannot be aligned")
            out[-1][1].append(name)
        elif not list(m.children()) and any(True for _ in m.parameters(recurse=False)):
            raise ValueError(f"{name} ({type(m).__name__}) has weights align = 'weights' does not know how to permute")
    if len(out) < 2:
        raise ValueError("align = 'weights' needs at least one hidden layer")
    return out



def handwritten_spec(model: nn.Module) -> dict[str, tuple[str | None, ...]]:
    """The groups written out by hand for the chains and the CIFAR ResNets (the reference for
    `permutation_spec`). Chains: one group per hidden layer. CIFAR ResNets: one group per residual stream (the
    stem, every block's second conv and the downsampling shortcuts of a stage write the same channels,
    so they share it) and one per block's inner channels (conv1 → conv2)."""
    state = model.state_dict()
    spec: dict[str, tuple[str | None, ...]] = {}

    def unit(prefix: str, out_g: str | None, in_g: str | None) -> None:
        w = state[f"{prefix}.weight"]
        spec[f"{prefix}.weight"] = (out_g, in_g) + (None,) * (w.dim() - 2)
        if f"{prefix}.bias" in state:
            spec[f"{prefix}.bias"] = (out_g,)

    def norm(prefix: str, g: str) -> None:
        for k in ("weight", "bias", "running_mean", "running_var"):
            if f"{prefix}.{k}" in state:
                spec[f"{prefix}.{k}"] = (g,)

    if isinstance(model, CifarResNet):
        stream = "stream0"
        unit("conv", stream, None)
        norm("bn", stream)
        for j, block in enumerate(model.blocks):
            inner, out = f"block{j}", stream
            if len(block.shortcut):  # a downsampling block starts a new stream
                out = f"stream{j + 1}"
                unit(f"blocks.{j}.shortcut.0", out, stream)
                norm(f"blocks.{j}.shortcut.1", out)
            unit(f"blocks.{j}.conv1", inner, stream)
            norm(f"blocks.{j}.bn1", inner)
            unit(f"blocks.{j}.conv2", out, inner)
            norm(f"blocks.{j}.bn2", out)
            stream = out
        unit("fc", None, stream)
        return spec
    layers = chain(model)
    for i, (name, norms) in enumerate(layers):
        out_g = f"h{i}" if i + 1 < len(layers) else None
        unit(name, out_g, f"h{i - 1}" if i else None)
        for n in norms:
            norm(n, out_g)
    return spec
