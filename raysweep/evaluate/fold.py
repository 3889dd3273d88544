"""Conv–BatchNorm folding for evaluation (`eval.fold_bn`, on by default for convolutional models).

In eval mode a BatchNorm after a convolution is an affine map per channel, so the pair is one
convolution with W' = W·γ/√(σ² + ε) and b' = β + (b − μ)·γ/√(σ² + ε). `Folded` traces the model once
(torch.fx), gives each conv → BN pair (the conv's output used by nothing else) a new convolution on
the traced graph and drops the BN there; `refold()` recomputes the new convolutions' weights from
the model's current tensors, once per point — so interpolated weights *and* running statistics
(or statistics re-estimated with bn = "reset") are folded exactly as the model would apply them. All
other modules are the model's own (shared, never copied). Exact to float rounding: the tests hold
it to 1e-5 relative against the unfolded model on CPU.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger("raysweep")


class Folded:
    def __init__(self, model: nn.Module):
        import torch.fx as fx

        self.model = model
        graph_module = fx.symbolic_trace(model)  # shares the model's submodules
        modules = dict(graph_module.named_modules())
        self.pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d, nn.Conv2d]] = []
        for node in list(graph_module.graph.nodes):
            if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
                continue
            src = node.args[0]
            if not (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1
                    and isinstance(modules.get(src.target), nn.Conv2d)):
                continue
            conv, bn = modules[src.target], modules[node.target]
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode).to(
                device=conv.weight.device, dtype=conv.weight.dtype)
            # left requiring grad like the model's own weights (they are only written under no_grad): bf16
            # autocast caches the casts of such leaves, so each is cast once per point, not per batch
            if conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous():
                fused = fused.to(memory_format=torch.channels_last)
            name = f"_folded_{len(self.pairs)}"
            graph_module.add_submodule(name, fused)  # on the traced root only: the model is untouched
            src.target = name
            node.replace_all_uses_with(src)
            graph_module.graph.erase_node(node)
            self.pairs.append((conv, bn, fused))
        graph_module.graph.lint()
        graph_module.recompile()
        self.module = graph_module

    @torch.no_grad()
    def refold(self) -> None:
        """The folded convolutions from the model's current weights and running statistics."""
        for conv, bn, fused in self.pairs:
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
            shift = -bn.running_mean if conv.bias is None else conv.bias - bn.running_mean
            fused.bias.copy_(bn.bias + shift * scale)

    def __call__(self, x):
        return self.module(x)


def fold(model: nn.Module) -> Folded | None:
    """A Folded view of the model, or None (with the reason logged) when it cannot be traced or has
    no conv → BN pair."""
    try:
        folded = Folded(model)
    except Exception as exc:  # torch.fx cannot trace every model (data-dependent control flow)
        log.info("eval.fold_bn: %s cannot be traced (%s: %s); evaluating it unfolded", type(model).__name__,
                    type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return None
    if not folded.pairs:
        log.info("eval.fold_bn: %s has no convolution followed by a BatchNorm; evaluating it unfolded",
                    type(model).__name__)
        return None
    return folded


def reproduces(folded: nn.Module, model: nn.Module, x: torch.Tensor, device_type: str) -> bool:
    """Whether the folded graph computes the model's outputs on `x`, in fp32 even for bf16 evaluation (a
    check of the traced graph, not of bf16 rounding)."""
    with torch.autocast(device_type, enabled=False):
        ref, got = model(x.float()), folded(x.float())
    tol = 1e-4 * max(1.0, ref.abs().max().item())
    return ref.shape == got.shape and bool(torch.allclose(got, ref, rtol=1e-4, atol=tol))
