"""The Evaluator: form θ(α) = (1−α)·θ_a + α·θ_b in place and evaluate whole splits. Plain torch
(the per-split sums it reads back are sums.py's).

The eval splits are moved to the device once; endpoint weights are cached (bounded in bytes);
θ(α) is written into one preallocated model with ``_foreach_lerp_``; loss and error sums stay on
the device and are read back once per α.
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict

import torch
from torch import nn

from raysweep.data.batches import train_batches
from raysweep.data.registry import load_splits
from raysweep.data.types import Splits
from raysweep.evaluate.fold import fold, reproduces
from raysweep.evaluate.harness import Harness
from raysweep.evaluate.losses import loss_fn, metric_fns, metric_name
from raysweep.evaluate.matching import match, matching_inputs
from raysweep.evaluate.repair import repair_point
from raysweep.evaluate.sums import (
    BN_RESET_SEED,
    BN_TYPES,
    bn_reestimation,
    choice_sums,
    count,
    first_layer_split,
    pick_device,
    sequence_metrics,
    split_sums,
)
from raysweep.io.checkpoints import load_tensors, map_tensors, ties
from raysweep.io.store import Store
from raysweep.models import build_model, takes_tokens
from raysweep.spec import Job

log = logging.getLogger("raysweep")


def _copy(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """targets ← sources; from memory-mapped ends on the host to another device, one tensor at a time."""
    if sources and sources[0].device != targets[0].device:
        for t, x in zip(targets, sources):
            t.copy_(x)
    else:
        torch._foreach_copy_(targets, sources)


def _lerp(targets: list[torch.Tensor], ends: list[torch.Tensor], weight: float) -> None:
    """targets ← targets + weight·(ends − targets); host ends brought to the device one tensor at a time."""
    if ends and ends[0].device != targets[0].device:
        for t, x in zip(targets, ends):
            t.lerp_(x.to(t.device), weight)
    else:
        torch._foreach_lerp_(targets, ends, weight)


class Evaluator:
    """Evaluates interpolation points of one job's checkpoints. Create once per process/actor."""

    def __init__(self, job: Job, store: Store, splits: Splits | None = None, device: str | None = None,
                 cache_bytes: int = 2 * 1024**3):
        self.job, self.store = job, store
        self.device = pick_device(device or job.eval.device)
        self.data = splits or load_splits(job.data, store)
        self.on_device = {}  # split name -> (x, y), moved once
        self.model = build_model(job.model, self.data.in_shape, self.data.num_classes).to(self.device).eval()
        cuda = self.device.type == "cuda"
        self.conv = any(isinstance(m, nn.Conv2d) for m in self.model.modules())
        # NHWC helps 2-D convolutions on CUDA (tensor cores) and on CPUs (oneDNN: ResNet-20 1.5x), exactly
        self.channels_last = self.conv and (job.eval.channels_last or (job.train.channels_last and cuda))
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        precision = job.eval.precision if job.eval.precision != "auto" else ("bf16" if job.train.amp else "fp32")
        self.bf16 = precision == "bf16" and cuda  # the CPU always evaluates in exact fp32
        self.loss = loss_fn(job.train.loss)
        # text: perplexity and bits per byte, columns derived from each split's token loss (sequence_metrics)
        self.derived = ["perplexity", "bits_per_byte"] if self.data.bytes_per_token else []
        # multiple-choice and lm-eval tasks: the standard error of their accuracy
        self.derived += ["error_se"] if self.data.choices or self.data.harness else []
        self.harness, self._harness_rows = None, {}  # lm-eval around the model (harness.py), made at first use
        self.metrics, self.metric_names, self._metric_spec = [], list(self.derived), []  # set per item: set_metrics
        if isinstance(self.model, nn.Sequential):  # each child's output feeds only the next one, and the
            for m in self.model:                   # Evaluator never trains: ReLUs may overwrite their input
                if isinstance(m, nn.ReLU):
                    m.inplace = True
        self.folded, self._fold_checked = None, False
        if job.eval.fold_bn and self.conv:
            self.folded = fold(self.model)
        # examples per forward of the whole model; CPU convolutions are cache-bound (ResNet-20 runs 2x faster in
        # batches of 64 than of 1,000), so on CPUs conv nets take at most eval.cpu_batch_size
        self.batch_size = job.eval.batch_size
        if self.conv and not cuda and job.eval.cpu_batch_size:
            self.batch_size = min(job.eval.batch_size, job.eval.cpu_batch_size)
        if takes_tokens(self.model) and not cuda:  # a language model on CPUs is cache-bound too: batches whose
            # logits take about 1 MiB (tinylm: 15 windows of 64 tokens, ~1.25x faster than 256 at once)
            cells = max(1, int(self.data.in_shape[0]) * self.data.num_classes * 4)
            self.batch_size = max(1, min(self.batch_size, (1 << 20) // cells))
        net = self.folded.module if self.folded is not None else self.model
        self.forward = self._compiled(net)
        self.head, self.tail = first_layer_split(self.model) if job.eval.first_layer else (None, None)
        self._pre: tuple[tuple, dict] | None = None  # ((pair key, splits), split -> (h_a, h_b)) of the last pair
        self._bn_batches: list[torch.Tensor] | None = None
        state = self.model.state_dict(keep_vars=True)
        tied = ties(state)  # a tied parameter is set, interpolated and read once, under its first name
        self.names = [n for n in state if n not in tied]
        self.targets = [state[n].data for n in self.names]
        self.float_idx = [i for i, t in enumerate(self.targets) if t.is_floating_point()]
        self.param_names = [n for n, _ in self.model.named_parameters()]
        self.param_idx = [self.names.index(n) for n in self.param_names]  # parameters, not BN statistics
        self.has_bn = any(isinstance(m, BN_TYPES) for m in self.model.modules())
        # with first-layer mixing only the tail's tensors change with α (LeNet-300-100: 12% of them)
        self.tail_idx = ([i for i in self.float_idx if int(self.names[i].split(".")[0]) >= len(self.head)]
                         if self.head is not None else self.float_idx)
        self._norms: tuple[str, tuple[float, float]] | None = None  # (pair key, norms) of the last pair
        self._aligned: tuple[str, list[torch.Tensor]] | None = None  # (pair key, aligned θ_b) of the last pair
        self._mix: dict[str, torch.Tensor] = {}  # split -> the preallocated mixed first-layer outputs
        self._counts: dict[str, int] = {}  # split -> what its sums are divided by
        self.cache: OrderedDict[str, list[torch.Tensor]] = OrderedDict()
        self.cache_bytes, self.cached_bytes = cache_bytes, 0

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in self.on_device:
            x, y = self.data.split(name, self.job.eval.train_examples)
            self.on_device[name] = (x.to(self.device), y.to(self.device))
        return self.on_device[name]

    def endpoint(self, path: str, sha256: str | None, host: bool = False) -> list[torch.Tensor]:
        """Tensors of a checkpoint in state_dict order, on the device; cached by path and sha. With `host` (a
        line's ends) and eval.ends = "mapped": views of the memory-mapped file on the host, never copied."""
        mapped = host and self.job.eval.ends == "mapped"
        key = f"{path}@{sha256}" + ("@mapped" if mapped else "")
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        tensors = (map_tensors if mapped else load_tensors)(self.store, path, sha256)
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise ValueError(f"checkpoint {self.store.url(path)} lacks {missing[:5]}; "
                             f"it was not written for this job's model")
        out = [tensors[n] if mapped else tensors[n].to(self.device) for n in self.names]
        size = sum(t.numel() * t.element_size() for t in out)
        while self.cache and self.cached_bytes + size > self.cache_bytes:
            _, old = self.cache.popitem(last=False)
            self.cached_bytes -= sum(t.numel() * t.element_size() for t in old)
        self.cache[key] = out
        self.cached_bytes += size
        return out

    def set_alpha(self, a: list[torch.Tensor], b: list[torch.Tensor], alpha: float) -> None:
        """model ← (1−α)·a + α·b for floating tensors; integer buffers come from a."""
        self.set_weights(a)
        self.lerp_towards(b, alpha)

    # -------------------------------------------------- setting a point (used by line, plane and trajectory items)
    def set_weights(self, tensors: list[torch.Tensor]) -> None:
        """model ← tensors (a checkpoint from `endpoint`, in state_dict order)."""
        _copy(self.targets, tensors)

    def set_tensor(self, i: int, tensor: torch.Tensor) -> None:
        """The model's i-th tensor (in `names` order) ← tensor: a merge writes its result tensor by tensor."""
        self.targets[i].copy_(tensor)

    def add_direction(self, direction: list[torch.Tensor], scale: float, params_only: bool = False) -> None:
        """model ← model + scale·direction on the floating tensors (or the parameters only: BN running
        statistics stay where they are)."""
        idx = self.param_idx if params_only else self.float_idx
        torch._foreach_add_([self.targets[i] for i in idx], [direction[i] for i in idx], alpha=float(scale))

    def lerp_towards(self, target: list[torch.Tensor], weight: float) -> None:
        """model ← model + weight·(target − model) on the floating tensors."""
        fl = self.float_idx
        _lerp([self.targets[i] for i in fl], [target[i] for i in fl], float(weight))

    @torch.no_grad()
    def probabilities(self, split: str, examples: int) -> torch.Tensor:
        """Softmax outputs of the current weights on the first `examples` of a split (eval mode)."""
        x, _ = self.split(split)
        self.model.eval()
        return torch.softmax(self.model(self.prepare(x[:examples])).float(), dim=1)

    @torch.no_grad()
    def aligned(self, a: list, b: list, pair_key: str, how: str = "weights", batches: int = 20) -> list[torch.Tensor]:
        """b with its units matched to a's (matching.py; by activations on `batches` batches); kept per pair."""
        if self._aligned is not None and self._aligned[0] == pair_key:
            return self._aligned[1]
        out = match(self.model, dict(zip(self.names, a)), dict(zip(self.names, b)), how, self.data.in_shape,
                    lambda: matching_inputs(self.data, self.job.train.batch_size, batches, self.device))
        tb = [out[n].contiguous() for n in self.names]
        self._aligned = (pair_key, tb)
        return tb

    @torch.no_grad()
    def norms(self, a: list[torch.Tensor], b: list[torch.Tensor], pair_key: str | None = None) -> tuple[float, float]:
        """(‖θ_b − θ_a‖, ‖θ_a‖) over the parameters (not the BN running statistics), in float64 one
        tensor at a time, read back with one sync; computed once per pair (`pair_key`)."""
        if pair_key is not None and self._norms is not None and self._norms[0] == pair_key:
            return self._norms[1]
        squares = torch.zeros(2, dtype=torch.float64, device=self.device)
        for i in self.param_idx:  # (mapped ends come to the device one tensor at a time)
            ai = a[i].to(self.device).double()
            squares[0] += (b[i].to(self.device).double() - ai).square().sum()
            squares[1] += ai.square().sum()
        dist, norm = squares.sqrt().tolist()
        if pair_key is not None:
            self._norms = (pair_key, (dist, norm))
        return dist, norm

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch as the model takes it: normalised in one pass, in bf16 when evaluating in bf16, NHWC
        with channels_last."""
        return self.data.prepare(x, dtype=torch.bfloat16 if self.bf16 else None, channels_last=self.channels_last)

    @torch.no_grad()
    def fixed_batches(self, num_batches: int) -> list[torch.Tensor]:
        """The first training batches of a fixed order, kept on the device (BN re-estimation, REPAIR)."""
        if self._bn_batches is None or len(self._bn_batches) < num_batches:
            batches = train_batches(self.data, self.job.train.batch_size, BN_RESET_SEED, 0)
            self._bn_batches = [x.to(self.device) for (x, _), _ in zip(batches, range(num_batches))]
        return self._bn_batches[:num_batches]

    def reestimate_bn(self, num_batches: int) -> None:
        """Re-estimate BN statistics on `fixed_batches`."""
        with bn_reestimation(self.model):
            for x in self.fixed_batches(num_batches):
                self.model(self.prepare(x))

    @torch.no_grad()
    def evaluate(self, splits: tuple[str, ...]) -> list[dict]:
        """Loss and error of the model's current weights on whole splits (one row per split)."""
        self.model.eval()
        return [self._row(s, values) for s, values in zip(splits, self._whole_splits(splits))]

    def _whole_splits(self, splits: tuple[str, ...]) -> list[list[float]]:
        """The sums of split_sums for the current weights on each split, read back with one sync. In
        bf16 one autocast region spans all of them, so each weight is cast once per point."""
        ours = [s for s in splits if s not in self.data.harness]
        values: dict[str, list[float]] = {}
        if ours:
            self._refold(ours[0])
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                sums = [choice_sums(self.forward, *self.split(s), *self.data.choices[s], self.batch_size,
                                    self.prepare, self.bf16, len(self.metrics)) if s in self.data.choices else
                        split_sums(self.forward, *self.split(s), self.batch_size, self.prepare, self.bf16, self.loss,
                                   self.metrics) for s in ours]
            values = dict(zip(ours, torch.stack(sums).tolist()))
        for s in splits:
            if s in self.data.harness:  # lm-eval's row of the task at these weights (_row reads it)
                if self.harness is None:
                    self.harness = Harness(self.model, self.job.data.tokenizer, self.batch_size, str(self.device))
                self._harness_rows[s] = self.harness.run(*self.data.harness[s])
                values[s] = []
        return [values[s] for s in splits]

    def _refold(self, split: str) -> None:
        """With eval.fold_bn, the folded convolutions from the weights just set (once per point). At the
        first point the folded and the model's own forward are compared on a few examples of `split`:
        a traced graph that computes something else (a model whose forward torch.fx cannot capture
        faithfully) turns folding off, with a warning, instead of changing the numbers."""
        if self.folded is None:
            return
        self.folded.refold()
        if not self._fold_checked:
            self._fold_checked = True
            if not reproduces(self.folded, self.model, self.prepare(self.split(split)[0][:8]), self.device.type):
                log.warning("eval.fold_bn: the folded %s does not reproduce the model's outputs; evaluating it "
                            "unfolded (set eval.fold_bn = false to skip the check)", type(self.model).__name__)
                self.folded = None
                self.forward = self._compiled(self.model)

    def _compiled(self, net):
        """`net` torch.compiled (eval.compile, in eval.compile_mode), else itself. The model's tensors
        keep their storage as θ(α) is written in place, so a compiled graph — a CUDA graph with
        "reduce-overhead" too — reads each point's weights without recompiling or re-capturing."""
        return torch.compile(net, mode=self.job.eval.compile_mode) if self.job.eval.compile else net

    def set_metrics(self, names: tuple[str, ...] | list[str]) -> None:
        """Record these extra per-example metrics (evaluate/losses.py) from now on; cached by name."""
        if list(names) != self._metric_spec:
            self.metrics = metric_fns(tuple(names))
            self.metric_names = [metric_name(n) for n in names] + self.derived
            self._metric_spec = list(names)

    def examples(self, split: str) -> int:
        """The split's examples (a multiple-choice task's: its questions, not its K windows each)."""
        if split in self.data.harness:
            return self._harness_rows[split][1]
        return len(self.data.choices[split][1]) if split in self.data.choices else len(self.split(split)[1])

    def _row(self, split: str, sums: list[float]) -> dict:
        """A split's means: its sums over the examples (over the valid tokens of token targets; a multiple-choice
        task's loss over its correct choices' tokens, its error over its questions; an lm-eval task's, lm-eval's)."""
        if split in self.data.harness:
            return {"split": split, **{name: math.nan for name in self.metric_names}, **self._harness_rows[split][0]}
        if split not in self._counts:
            y = self.split(split)[1]
            if split in self.data.choices:
                k, labels = self.data.choices[split]
                picked = y.view(len(labels), k, -1)[torch.arange(len(labels)), labels.to(y.device)]
                self._counts[split] = (count(picked), len(labels))
            else:
                self._counts[split] = (count(y), count(y))
        n, questions = self._counts[split]
        row = {"split": split, "loss": sums[0] / n, "error": sums[1] / questions,
               **{name: v / n for name, v in zip(self.metric_names, sums[2:])}}
        if self.derived:
            row.update(sequence_metrics(row["loss"], self.data.bytes_per_token[split]))
        if "error_se" in self.derived:  # a fraction of independent questions; tokens of text are not
            e = row["error"]
            row["error_se"] = math.sqrt(e * (1 - e) / (questions - 1)) if split in self.data.choices and \
                questions > 1 else math.nan
        return row

    @torch.no_grad()
    def first_layer_outputs(self, a, b, splits, pair_key: str | None) -> dict | None:
        """split -> (f(x; W_a), f(x; W_b)) of the first (linear) layer, when they fit the budget."""
        if self.head is None or self.bf16:
            return None
        key = (pair_key, tuple(splits))  # the same pair asked for other splits is other work
        if pair_key is not None and self._pre is not None and self._pre[0] == key:
            return self._pre[1]
        width = self.head[-1].out_features
        if sum(len(self.split(s)[1]) for s in splits) * width * 4 * 2 > self.job.eval.first_layer_bytes:
            return None
        out = {}
        for s in splits:
            x, _ = self.split(s)
            hs = []
            for alpha in (0.0, 1.0):  # lerp with weight 0 (1) gives θ_a (θ_b) exactly
                self.set_alpha(a, b, alpha)
                hs.append(torch.cat([self.head(self.prepare(x[i:i + self.job.eval.batch_size]))
                                     for i in range(0, len(x), self.job.eval.batch_size)]))
            out[s] = tuple(hs)
        self._pre = (key, out) if pair_key is not None else None
        return out

    def _set_tail(self, a: list[torch.Tensor], b: list[torch.Tensor], alpha: float) -> None:
        idx = self.tail_idx
        if not idx:  # a model that is one linear layer: its outputs are all mixed
            return
        targets = [self.targets[i] for i in idx]
        _copy(targets, [a[i] for i in idx])
        _lerp(targets, [b[i] for i in idx], float(alpha))

    def _mixed(self, split: str, h_a: torch.Tensor, h_b: torch.Tensor, alpha: float) -> torch.Tensor:
        """(1−α)·h_a + α·h_b written into one buffer per split (the tail's in-place activations
        overwrite it; it is rewritten at every α), so no α allocates a split-sized tensor."""
        buf = self._mix.get(split)
        if buf is None or buf.shape != h_a.shape:
            buf = self._mix[split] = torch.empty_like(h_a)
        return torch.lerp(h_a, h_b, float(alpha), out=buf)

    @torch.no_grad()
    def evaluate_pair(self, a: list[torch.Tensor], b: list[torch.Tensor], alphas: list[float],
                      splits: tuple[str, ...], bn: str = "interpolate", bn_batches: int = 20,
                      pair_key: str | None = None) -> list[dict]:
        """One row per (α, split): alpha, split, loss, error, n_examples.

        The first layer is linear in its weights, so f(x; (1−α)W_a + αW_b) = (1−α)f(x; W_a) + αf(x; W_b):
        its outputs are computed once per pair and mixed per α (MLPs: most of the FLOPs).
        """
        rows, bs = [], self.job.eval.batch_size
        pre = self.first_layer_outputs(a, b, splits, pair_key) if bn != "repair" else None  # REPAIR moves layer 1
        for alpha in alphas:
            if pre is not None and not (bn == "reset" and self.has_bn):
                self._set_tail(a, b, alpha)  # the first layer's weights are not used: mixed outputs are
            else:
                self.set_alpha(a, b, alpha)
            if bn == "reset" and self.has_bn:
                self.reestimate_bn(bn_batches)
            elif bn == "repair":  # REPAIR's per-unit correction (evaluate/repair.py)
                repair_point(self, a, b, alpha, bn_batches, pair_key)
            self.model.eval()
            if pre is not None:
                values = torch.stack([split_sums(self.tail, self._mixed(s, *pre[s], alpha), self.split(s)[1], bs,
                                                 loss=self.loss, metrics=self.metrics) for s in splits]).tolist()
            else:
                values = self._whole_splits(splits)
            for s, sums_of_split in zip(splits, values):
                rows.append({"alpha": float(alpha), **self._row(s, sums_of_split), "n_examples": self.examples(s)})
        return rows
