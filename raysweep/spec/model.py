"""Typed, frozen job specs: the dataclasses, their defaults and their validation (``problems``).

A job is data (``jobs/<name>.toml``). Parsing refuses unknown keys and wrong types with a message
that names the key and what is valid; ``validate`` refuses impossible values. The training hash
covers the non-default fields that change trained weights (data, model, train, seed), so adding a
field with a default keeps old hashes valid; each sweep has a hash of its own, so changing an α
grid never retrains anything.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

LINE_KINDS = ("init_to_final", "step_to_final", "final_to_final", "random_to_final", "instability")
TRAJECTORY_KINDS = ("projection", "function_map")  # T2 and T6: one item per replicate's trajectory
PLANE_KINDS = ("random_plane", "line_and_random", "path_surface")  # T4, T5, T3: 2-D grids per replicate
SWEEP_KINDS = LINE_KINDS + TRAJECTORY_KINDS + PLANE_KINDS
SCHEDULES = ("frankle", "every_epoch", "list")
INITS = ("openlth", "uniform", "default")
# the registries' names (raysweep.models.MODELS, raysweep.data.DATASETS), so validating a job imports no torch
BUILTIN_MODELS = ("scalar_product", "factored_linear", "mlp", "lenet_300_100", "cifar_resnet_20", "cifar_vgg_16",
                  "resnet50")
BUILTIN_DATASETS = ("digits", "blobs", "mnist", "fashion_mnist", "cifar10", "imagenet", "linreg")
PIXELS = ("standardized", "unit")
LR_DECAYS = ("step", "linear_epoch", "exponential")
BN_MODES = ("interpolate", "reset")
SPLITS = ("train", "test")
MAX_ALPHAS = 100_000
NOT_WEIGHTS = {"weights": False}  # field metadata: this field does not change trained weights (not hashed)
MAX_REPLICATES = 10_000
MAX_INT = 2**53  # integers beyond this are not exact in JSON, TOML readers or float arithmetic
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}"  # job names: plain identifiers, they name folders


class SpecError(ValueError):
    """A job file or override that cannot be used; the message names the key and the fix."""


@dataclass(frozen=True)
class AlphaGrid:
    start: float = 0.0
    stop: float = 1.0
    num: int = 100
    values: tuple[float, ...] = ()  # an explicit grid; when given, start/stop/num are ignored

    def points(self) -> list[float]:
        if self.values:
            return [float(a) for a in self.values]
        if self.num == 1:
            return [float(self.start)]
        step = (self.stop - self.start) / (self.num - 1)
        # round so that 0 and 1 land exactly on grids such as [-0.5, 1.5] x 201
        return [round(self.start + i * step, 12) for i in range(self.num)]

    def problems(self, where: str) -> list[str]:
        out = []
        if self.values:
            vals = list(self.values)
            if any(not math.isfinite(v) for v in vals):
                out.append(f"{where}.values contains NaN or infinity; give finite numbers")
            elif any(b <= a for a, b in zip(vals, vals[1:])):
                out.append(f"{where}.values must be strictly increasing with no duplicates, got {vals[:8]}...")
            if len(vals) > MAX_ALPHAS:
                out.append(f"{where}.values has {len(vals)} points; at most {MAX_ALPHAS}")
            return out
        if not (math.isfinite(self.start) and math.isfinite(self.stop)):
            out.append(f"{where}.start/stop must be finite numbers")
        elif self.stop <= self.start:
            out.append(f"{where}: stop ({self.stop}) must be greater than start ({self.start}); "
                       f"e.g. --set {where}.start=0 --set {where}.stop=1")
        if not 2 <= self.num <= MAX_ALPHAS:
            out.append(f"{where}.num must be between 2 and {MAX_ALPHAS}, got {self.num}")
        elif not out and len(set(self.points())) != self.num:
            out.append(f"{where}: {self.num} points between {self.start} and {self.stop} are too close "
                       f"to tell apart; use fewer points or a wider range")
        return out


@dataclass(frozen=True)
class SweepSpec:
    name: str = ""
    kind: str = "init_to_final"  # I1/I4/I7: init_to_final, I2: step_to_final, I5, I6
    alpha: AlphaGrid = AlphaGrid()
    splits: tuple[str, ...] = ("test",)
    bn: str = "interpolate"  # or "reset": re-estimate running stats at each alpha
    bn_batches: int = 20  # training batches used to re-estimate BN statistics in "reset" mode
    random_scale: float = 4.0  # random_to_final: theta_r = random_scale * (a fresh init draw)
    chunk: int = 0  # α per work item; 0 chooses it from the model's cost (~1e13 FLOP per item)
    examples: int = 1000  # function_map: τ/κ on the first N test examples (B: 1000)
    beta: AlphaGrid = AlphaGrid(start=-1.0, stop=1.0, num=21)  # planes: the grid's second axis
    filter_norm: bool = False  # random_plane: filter-normalised directions (Li et al. 2018)
    metrics: tuple[str, ...] = ()  # line sweeps: extra per-example metrics ("top5_error", "pkg.module:fn")
    # final_to_final: "weights" permutes θ_T(j)'s hidden units to match θ_T(i) before interpolating (weight
    # matching, Ainsworth et al. 2023; MLPs, VGG-16, CIFAR ResNets), so the barrier left is not one of unit order
    align: str = "none"
    # instability (Frankle et al. 2020, LMC): two children of each replicate spawned at each of these
    # checkpoint steps, trained on to T with their own data order; the line runs between the children
    spawn_steps: tuple[int, ...] = ()
    # line sweeps: up to `refine` extra α per curve, bisecting around its barrier peak until a level moves
    # the barrier by less than refine_tol (loss units); see sweep/refine.py
    refine: int = 0
    refine_tol: float = 1e-3

    def problems(self, where: str) -> list[str]:
        out = []
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            out.append(f"{where}.name must be a non-empty name of letters, digits, '_' or '-', got {self.name!r}")
        out += _choice(f"{where}.kind", self.kind, SWEEP_KINDS)
        out += _choice(f"{where}.bn", self.bn, BN_MODES)
        for s in self.splits:
            out += _choice(f"{where}.splits", s, SPLITS)
        if not self.splits:
            out.append(f"{where}.splits is empty; give at least one of {list(SPLITS)}")
        out += self.alpha.problems(f"{where}.alpha")
        out += _resolves(f"{where}.metrics", self.metrics, "metric")
        if self.metrics and self.kind not in LINE_KINDS:
            out.append(f"{where}.metrics: extra metrics are recorded by line sweeps ({list(LINE_KINDS)})")
        if self.kind in PLANE_KINDS:
            out += self.beta.problems(f"{where}.beta")
        if not 0 <= self.chunk <= MAX_ALPHAS:
            out.append(f"{where}.chunk must be in [0, {MAX_ALPHAS}] (0 = automatic), got {self.chunk}")
        if not 1 <= self.examples <= 1 << 24:
            out.append(f"{where}.examples must be between 1 and {1 << 24:,}, got {self.examples}")
        if not 1 <= self.bn_batches <= 100_000:
            out.append(f"{where}.bn_batches must be between 1 and 100,000, got {self.bn_batches}")
        if not 0 < self.random_scale <= 1e6:
            out.append(f"{where}.random_scale must be in (0, 1e6], got {self.random_scale}")
        if self.kind == "instability" and not self.spawn_steps:
            out.append(f"{where}.spawn_steps: an instability sweep needs the checkpoint steps to spawn children "
                       f"from, e.g. spawn_steps = [0, 16, 128, 1024]")
        if self.spawn_steps and self.kind != "instability":
            out.append(f"{where}.spawn_steps is for instability sweeps; this sweep is {self.kind!r}")
        if any(not 0 <= v < MAX_INT for v in self.spawn_steps) or len(set(self.spawn_steps)) != len(self.spawn_steps):
            out.append(f"{where}.spawn_steps must be distinct steps >= 0, got {list(self.spawn_steps)}")
        if not 0 <= self.refine <= 1000:
            out.append(f"{where}.refine must be in [0, 1000] extra α per curve, got {self.refine}")
        if self.refine and self.kind not in LINE_KINDS:
            out.append(f"{where}.refine is for line sweeps ({list(LINE_KINDS)})")
        if not self.refine_tol > 0:
            out.append(f"{where}.refine_tol must be > 0, got {self.refine_tol}")
        out += _choice(f"{where}.align", self.align, ("none", "weights"))
        if self.align != "none" and self.kind != "final_to_final":
            out.append(f"{where}.align is for final_to_final sweeps (two solutions); this sweep is {self.kind!r}")
        return out


@dataclass(frozen=True)
class DataSpec:
    name: str = "digits"
    root: str = field(default="", metadata=NOT_WEIGHTS)  # where the dataset lives; "" = $RAYSWEEP_DATA or ./data
    num_workers: int = 0  # DataLoader workers for streamed datasets: each has its own augmentation RNG, so hashed
    kwargs: str = "{}"  # a user loader's keyword arguments ([data.kwargs] in TOML), kept as canonical JSON
    # built-in image datasets: standardized ((x/255 − mean)/std, the dataset's own statistics) | unit (x/255 in
    # [0, 1], as pylearn2 feeds MNIST to G's networks)
    pixels: str = "standardized"

    def options(self) -> dict:
        from raysweep.plugins import options

        return options(self.kwargs)

    def problems(self, where: str) -> list[str]:
        from raysweep.plugins import kwargs_problems

        out = kwargs_problems(where, self.kwargs) + _choice(f"{where}.pixels", self.pixels, PIXELS)
        return out + ([] if 0 <= self.num_workers <= 256 else [f"{where}.num_workers must be in [0, 256]"])


@dataclass(frozen=True)
class ModelSpec:
    name: str = "mlp"
    hidden: tuple[int, ...] = (100,)  # MLP hidden widths
    activation: str = "relu"  # relu | sigmoid | tanh | maxout
    maxout_pieces: int = 2
    dropout: float = 0.0
    input_dropout: float = 0.0
    batchnorm: bool = False  # MLP: BatchNorm1d after each hidden linear layer
    # openlth: kaiming_normal (fan_in) weights, PyTorch's default biases, BN γ ~ U[0,1) (F);
    # uniform: MLP weights ~ U(-r, r) with r = init_range[i] per linear layer (0: zeros), zero biases (pylearn2's irange);
    # default: PyTorch's (= Torch7's) nn.Linear/Conv2d init, weights and biases ~ U(±1/√fan_in)
    init: str = "openlth"
    init_range: tuple[float, ...] = ()
    input_dropout_rescale: bool = True  # False: input dropout without 1/(1-p) scaling (pylearn2 input_scales = 1)
    kwargs: str = "{}"  # a user builder's keyword arguments ([model.kwargs] in TOML), kept as canonical JSON

    def options(self) -> dict:
        from raysweep.plugins import options

        return options(self.kwargs)

    def problems(self, where: str) -> list[str]:
        from raysweep.plugins import kwargs_problems

        out = _choice(f"{where}.activation", self.activation, ("relu", "sigmoid", "tanh", "maxout"))
        out += kwargs_problems(where, self.kwargs)
        if any(not 1 <= h <= 1 << 20 for h in self.hidden) or len(self.hidden) > 1000:
            out.append(f"{where}.hidden: at most 1,000 widths, each in [1, 2**20], got {list(self.hidden)[:10]}")
        for key in ("dropout", "input_dropout"):
            if not 0 <= getattr(self, key) < 1:
                out.append(f"{where}.{key} must be in [0, 1), got {getattr(self, key)}")
        if not 1 <= self.maxout_pieces <= 64:
            out.append(f"{where}.maxout_pieces must be in [1, 64]")
        out += _choice(f"{where}.init", self.init, INITS)
        if self.init == "uniform" and (self.name != "mlp" or len(self.init_range) != len(self.hidden) + 1):
            out.append(f"{where}.init = 'uniform' is for the mlp model and needs one range per linear layer "
                       f"({len(self.hidden) + 1} here: the hidden layers, then the output), got "
                       f"{where}.init_range = {list(self.init_range)}")
        if self.init != "uniform" and self.init_range:
            out.append(f"{where}.init_range is only used with {where}.init = 'uniform'")
        if any(not 0 <= r <= 100 for r in self.init_range):
            out.append(f"{where}.init_range values must be in [0, 100], got {list(self.init_range)}")
        return out


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0  # applied to all parameters, as OpenLTH does
    milestones: tuple[int, ...] = ()  # epochs at which lr is multiplied by gamma
    gamma: float = 0.1
    warmup_epochs: float = 0.0  # linear warmup, per iteration
    # lr_decay: step (OpenLTH: × gamma at each milestone) | linear_epoch (pylearn2 LinearDecayOverEpoch: from
    # epoch decay_start to decay_saturate down to lr · decay_factor) | exponential (pylearn2 ExponentialDecay:
    # lr / decay_factor^step, at least min_lr)
    lr_decay: str = "step"
    decay_start: int = 1
    decay_saturate: int = 0
    decay_factor: float = 1.0
    min_lr: float = 0.0
    # pylearn2 MomentumAdjustor: momentum rises linearly from `momentum` at epoch momentum_start to
    # final_momentum at momentum_saturate (0: constant momentum)
    final_momentum: float = 0.0
    momentum_start: int = 1
    momentum_saturate: int = 0
    max_norm: tuple[float, ...] = ()  # MLP: each unit's incoming weight norm capped after every step, one per linear layer
    checkpoints: str = "frankle"  # frankle | every_epoch | list
    steps: tuple[int, ...] = ()  # extra steps to save (the schedule when checkpoints = "list")
    log_splits: tuple[str, ...] = field(default=("train", "test"), metadata=NOT_WEIGHTS)  # evaluated at each checkpoint
    loss: str = "auto"  # auto | cross_entropy | squared_error | pkg.module:fn (per-example; see evaluate/losses.py)
    amp: bool = False  # bf16 autocast on CUDA
    channels_last: bool = False

    def problems(self, where: str) -> list[str]:
        out = _choice(f"{where}.checkpoints", self.checkpoints, SCHEDULES)
        out += [] if self.loss == "auto" else _resolves(f"{where}.loss", (self.loss,), "loss")
        for key, most in (("epochs", 100_000), ("batch_size", 1 << 24)):
            if not 1 <= getattr(self, key) <= most:
                out.append(f"{where}.{key} must be between 1 and {most:,}, got {getattr(self, key)}")
        if not self.momentum < 1:
            out.append(f"{where}.momentum must be < 1 (SGD diverges otherwise), got {self.momentum}")
        if not self.gamma > 0:
            out.append(f"{where}.gamma must be > 0, got {self.gamma}")
        if any(not 0 <= m <= 100_000 for m in self.milestones):
            out.append(f"{where}.milestones must be epochs in [0, 100,000], got {list(self.milestones)}")
        if any(s > 1 << 40 for s in self.steps):
            out.append(f"{where}.steps must be at most 2**40")
        if not self.lr > 0:
            out.append(f"{where}.lr must be > 0, got {self.lr}")
        for key in ("momentum", "weight_decay", "warmup_epochs", "gamma"):
            if getattr(self, key) < 0:
                out.append(f"{where}.{key} must be >= 0, got {getattr(self, key)}")
        for s in self.log_splits:
            out += _choice(f"{where}.log_splits", s, SPLITS)
        if any(s < 0 for s in self.steps):
            out.append(f"{where}.steps must be >= 0, got {list(self.steps)}")
        out += _choice(f"{where}.lr_decay", self.lr_decay, LR_DECAYS)
        if self.lr_decay == "linear_epoch" and not (0 <= self.decay_start < self.decay_saturate
                                                    and 0 < self.decay_factor <= 1):
            out.append(f"{where}.lr_decay = 'linear_epoch' needs 0 <= decay_start < decay_saturate and decay_factor "
                       f"in (0, 1], got {self.decay_start}, {self.decay_saturate}, {self.decay_factor}")
        if self.lr_decay == "exponential" and not (self.decay_factor >= 1 and self.min_lr >= 0):
            out.append(f"{where}.lr_decay = 'exponential' divides lr by decay_factor each step: it needs "
                       f"decay_factor >= 1 and min_lr >= 0, got {self.decay_factor}, {self.min_lr}")
        if self.momentum_saturate and not (0 <= self.momentum_start <= self.momentum_saturate
                                           and 0 <= self.final_momentum < 1):
            out.append(f"{where}.momentum_saturate needs 0 <= momentum_start <= momentum_saturate and "
                       f"final_momentum in [0, 1), got {self.momentum_start}, {self.momentum_saturate}, "
                       f"{self.final_momentum}")
        if any(not m > 0 for m in self.max_norm):
            out.append(f"{where}.max_norm values must be > 0, got {list(self.max_norm)}")
        if self.checkpoints == "list" and not self.steps:
            out.append(f"{where}.checkpoints = 'list' needs {where}.steps, e.g. --set {where}.steps=[0,100]")
        return out


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class EvalSpec:
    batch_size: int = 1000
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 (TF32 matmuls on CUDA) | bf16 (autocast on CUDA: faster, less exact) | auto (bf16 when train.amp)
    channels_last: bool = True  # NHWC inputs and weights for models with 2-D convolutions (CPU and CUDA: faster, exact)
    compile: bool = False  # torch.compile the evaluated model (inductor: on CPUs it needs a C++ compiler)
    compile_mode: str = "default"  # torch.compile's mode; "reduce-overhead": CUDA graphs (weights change in place)
    first_layer: bool = True  # mix the first layer's outputs instead of recomputing them (exact)
    first_layer_bytes: int = 1 << 30  # at most this much device memory for the cached first-layer outputs
    fold_bn: bool = True  # fold each conv → BatchNorm pair into one convolution per point (evaluate/fold.py)
    cpu_batch_size: int = 64  # on CPUs, convolutional models take batches of at most this many (cache-bound); 0: batch_size

    def problems(self, where: str) -> list[str]:
        out = _choice(f"{where}.device", self.device, ("auto", "cpu", "cuda"))
        out += _choice(f"{where}.precision", self.precision, ("fp32", "bf16", "auto"))
        out += _choice(f"{where}.compile_mode", self.compile_mode, COMPILE_MODES)
        out += [] if 1 <= self.batch_size <= 1 << 24 else [f"{where}.batch_size must be in [1, 2**24]"]
        out += [] if 0 <= self.cpu_batch_size <= 1 << 24 else [f"{where}.cpu_batch_size must be in [0, 2**24]"]
        return out + ([f"{where}.first_layer_bytes must be >= 0"] if self.first_layer_bytes < 0 else [])


@dataclass(frozen=True)
class ResourcesSpec:
    accelerator: str = "auto"  # gpu: GPUs required (waits for the autoscaler) | auto | cpu (see cluster.py)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = -1.0  # -1: 1 when the job runs on GPUs (accelerator), else 0
    eval_actors: int = 0  # 0: one per GPU, or one per CPU when there are no GPUs
    gpus_per_actor: float = -1.0  # -1: 1 when the job runs on GPUs (accelerator), else 0

    def problems(self, where: str) -> list[str]:
        out = _choice(f"{where}.accelerator", self.accelerator, ("auto", "gpu", "cpu"))
        out += [] if self.cpus_per_trial > 0 else [f"{where}.cpus_per_trial must be > 0"]
        for key in ("gpus_per_trial", "gpus_per_actor"):
            value = getattr(self, key)
            if not (value == -1 or 0 <= value <= 64):
                out.append(f"{where}.{key} must be -1 (decided by accelerator) or a number of GPUs in [0, 64]")
            elif self.accelerator == "cpu" and value > 0:
                out.append(f"{where}.{key} = {value:g} asks for GPUs but {where}.accelerator = \"cpu\"; "
                           f"drop one of the two")
        return out + ([f"{where}.eval_actors must be >= 0"] if self.eval_actors < 0 else [])


@dataclass(frozen=True)
class Job:
    name: str
    description: str = ""
    replicates: int = 3
    seed: int = 0  # replicate k is seeded with seed + k (init, data order, dropout)
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    resources: ResourcesSpec = ResourcesSpec()
    sweeps: tuple[SweepSpec, ...] = ()
    # checkpoints trained elsewhere, one list per replicate (its steps 0, 1, ... in order): files or
    # s3:// URIs of .safetensors or torch.save state dicts; set, they replace training
    external: tuple[tuple[str, ...], ...] = ()

    def problems(self) -> list[str]:

        import re

        out = [] if 1 <= self.replicates <= MAX_REPLICATES else [
            f"replicates must be between 1 and {MAX_REPLICATES:,}, got {self.replicates}"]
        if not re.fullmatch(NAME_PATTERN, self.name):
            out.append(f"name = {self.name!r} is not a plain name: use letters, digits, '_' and '-' (at most 100, "
                       f"starting with a letter or digit); it names the run's folder in the store")
        if not 0 <= self.seed < 2**31:
            out.append(f"seed must be in [0, 2**31), got {self.seed}")
        from raysweep.plugins import plugin_problems as _plugin_problems

        out += _plugin_problems("data.name", self.data.name, BUILTIN_DATASETS, ("<root>",), self.data.options())
        out += _plugin_problems("model.name", self.model.name, BUILTIN_MODELS, ((1, 8, 8), 10), self.model.options())
        if self.external:
            if len(self.external) != self.replicates:
                out.append(f"external lists checkpoints of {len(self.external)} replicate(s) but replicates = "
                           f"{self.replicates}; make them agree")
            if any(not files for files in self.external):
                out.append("external: every replicate needs at least one checkpoint file")
        for key in ("data", "model", "train", "eval", "resources"):
            out += getattr(self, key).problems(key)
        layers = len(self.model.hidden) + 1
        if self.train.max_norm and (self.model.name != "mlp" or len(self.train.max_norm) != layers):
            out.append(f"train.max_norm is for the mlp model, one limit per linear layer ({layers} here: the hidden "
                       f"layers, then the output), got {list(self.train.max_norm)}")
        names = [s.name for s in self.sweeps]
        for s in self.sweeps:
            out += s.problems(f"sweeps.{s.name or '?'}")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            out.append(f"sweep names must be unique; repeated: {dup}")
        if any(s.kind == "final_to_final" for s in self.sweeps) and self.replicates < 2:
            out.append("a final_to_final sweep needs replicates >= 2")
        return out

    def sweep(self, name: str) -> SweepSpec:
        for s in self.sweeps:
            if s.name == name:
                return s
        raise SpecError(f"job {self.name!r} has no sweep {name!r}; its sweeps are {[s.name for s in self.sweeps]}")

    @property
    def hash(self) -> str:
        """Content hash of the non-default fields that determine the trained weights."""
        from raysweep.spec.hashing import job_hash

        return job_hash(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _resolves(key: str, names, kind: str) -> list[str]:
    """Per-example losses and metrics: built-in names or import paths that load (evaluate/losses.py)."""
    if not names:
        return []
    from raysweep.evaluate.losses import LOSSES, METRICS, metric_name, resolve

    out = []
    for name in names:
        try:
            resolve(name, LOSSES if kind == "loss" else METRICS, key)
        except SpecError as exc:
            out.append(str(exc))
    cols = [metric_name(n) for n in names]
    if kind == "metric" and (len(set(cols)) != len(cols) or {"loss", "error"} & set(cols)):
        out.append(f"{key}: metric names must be distinct and not 'loss' or 'error', got {cols}")
    return out


def _choice(key: str, value, choices) -> list[str]:
    return [] if value in choices else [f"{key} = {value!r} is not valid; choose one of {list(choices)}"]
