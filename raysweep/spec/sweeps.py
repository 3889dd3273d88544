"""Sweeps in a job: the α grid, the sweep table and the names of the sweep kinds (the job language;
what each kind does is the registry in ``raysweep.work.kinds``)."""
from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass

from raysweep.errors import SpecError
from raysweep.spec.names import choice_problems as _choice
from raysweep.spec.names import metric_name_problems

# kind names by family; every name has one record in raysweep.work.kinds (tested)
LINE_KINDS = ("init_to_final", "step_to_final", "final_to_final", "random_to_final", "instability")
TRAJECTORY_KINDS = ("projection", "function_map")  # T2 and T6: one item per replicate's trajectory
# T4, T5, T3, and the optimisation path's PCA plane (Li et al. 2018, §7): 2-D grids per replicate
PLANE_KINDS = ("random_plane", "line_and_random", "path_surface", "pca_plane")
# model merging over the replicates' finals: uniform and greedy soups (Wortsman et al. 2022); task arithmetic
# θ_pre + λ·Σ_k (θ_k − θ_pre) over the sweep's α grid as λ (Ilharco et al. 2023); TIES (Yadav et al. 2023) over
# its density, DARE (Yu et al. 2024) and dare_ties over its drop rate, SLERP between two finals over t, each the α grid
MERGE_KINDS = ("soup", "task_arithmetic", "ties", "dare", "dare_ties", "slerp")
# mode-connecting curves (Garipov et al. 2018): a trained bend between two finals, evaluated along t ∈ [0, 1]
CURVE_KINDS = ("curve",)
POINT_KINDS = LINE_KINDS + CURVE_KINDS  # their points are rows of the curves and barriers tables
SWEEP_KINDS = LINE_KINDS + TRAJECTORY_KINDS + PLANE_KINDS + MERGE_KINDS + CURVE_KINDS
CURVE_SHAPES = ("bezier", "polychain")
BN_MODES = ("interpolate", "reset", "repair")  # repair: REPAIR's per-unit correction (evaluate/repair.py)
SPLITS = ("train", "test")
# a fixed, seeded subset of the training split (eval.train_examples of it), evaluated whole like "test" — also
# where the training split itself is streamed (ImageNet, packed datasets): data/types.subset_indices
TRAIN_SUBSET = "train_subset"
MAX_ALPHAS = 100_000
MAX_INT = 2**53  # integers beyond this are not exact in JSON, TOML readers or float arithmetic


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
class SharpnessSpec:
    """Sharpness along a line sweep's pairs (PyHessian): λ_max and tr(H) of the loss at these α (and, with
    at_peak, at each curve's barrier peak once the line is stored), on the first `examples` of the sweep's
    first split. Items of their own (points/sharpness/): adding it never recomputes the line. Beyond λ_max
    (evaluate/hessian.py): the top `top_k` eigenvalues by Lanczos, the spectral density by stochastic
    Lanczos quadrature over `density` probes, and the loss along the top eigenvectors (`along` points
    per axis in [−radius, radius]: a line along v1 and a grid over v1, v2)."""
    alphas: tuple[float, ...] = ()
    at_peak: bool = False
    iterations: int = 20  # power-iteration steps at most (it stops earlier at a relative change of 1e-4)
    probes: int = 10  # Hutchinson's Rademacher probes for the trace
    examples: int = 1000  # 0: the whole split
    top_k: int = 1  # > 1: the k largest eigenvalues (Lanczos; column eigenvalues)
    density: int = 0  # > 0: SLQ's Rademacher probes for the eigenvalue density (density_nodes, density_weights)
    steps: int = 30  # Lanczos steps for top_k (at least 2k + 10) and per density probe
    along: int = 0  # > 1: points per axis of the loss along the top eigenvectors (along_t, along_loss, plane_loss)
    radius: float = 0.5  # ... at t in [−radius, radius] times the unit eigenvector (PyHessian's plots: 0.5)

    @property
    def spectrum(self) -> bool:
        """Whether the items record more than λ_max and tr(H) (the list columns)."""
        return self.top_k > 1 or self.density > 0 or self.along > 1

    @property
    def on(self) -> bool:
        return bool(self.alphas) or self.at_peak

    def problems(self, where: str) -> list[str]:
        out = []
        if any(not math.isfinite(a) for a in self.alphas) or len(set(self.alphas)) != len(self.alphas):
            out.append(f"{where}.alphas must be distinct finite numbers, got {list(self.alphas)}")
        if not 1 <= self.iterations <= 10_000 or not 1 <= self.probes <= 100_000:
            out.append(f"{where}.iterations must be in [1, 10000] and {where}.probes in [1, 100000]")
        if not 0 <= self.examples <= 1 << 24:
            out.append(f"{where}.examples must be in [0, 2**24] (0: the whole split)")
        if not (1 <= self.top_k <= 1000 and 0 <= self.density <= 10_000 and 2 <= self.steps <= 10_000):
            out.append(f"{where}: top_k must be in [1, 1000], density (probes) in [0, 10000] and steps in [2, 10000]")
        if self.along == 1 or not 0 <= self.along <= 1001 or not (math.isfinite(self.radius) and self.radius > 0):
            out.append(f"{where}.along must be 0 (off) or in [2, 1001] points per axis, and radius a positive number")
        return out


@dataclass(frozen=True)
class CurveSpec:
    """A curve sweep's bend (Garipov et al. 2018): φ(t) between θ_a and θ_b through a trained point θ,
    quadratic Bézier (1−t)²θ_a + 2t(1−t)θ + t²θ_b, or the polygonal chain θ_a → θ → θ_b. The bend
    starts at the midpoint and minimises E_t~U(0,1)[loss(φ(t))] + wd/2·‖φ(t)‖² (train/bend.py)."""
    shape: str = "bezier"
    epochs: int = 0  # 0: the job's train.epochs
    lr: float = 0.0  # 0: the job's train.lr (held for half the epochs, down to 1% at 90%, as Garipov et al.)

    def problems(self, where: str) -> list[str]:
        out = _choice(f"{where}.shape", self.shape, CURVE_SHAPES)
        if not 0 <= self.epochs <= 100_000:
            out.append(f"{where}.epochs must be in [0, 100000] (0: the job's train.epochs), got {self.epochs}")
        if not (math.isfinite(self.lr) and 0 <= self.lr <= 100):
            out.append(f"{where}.lr must be in [0, 100] (0: the job's train.lr), got {self.lr}")
        return out


@dataclass(frozen=True)
class ParamsSpec:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @property
    def on(self) -> bool:
        return bool(self.include or self.exclude)

    def selected(self, names: list[str], where: str = "params") -> set[str]:
        """The names the globs select; a glob that matches nothing raises, naming the tensors."""
        for glob in self.include + self.exclude:
            if not fnmatch.filter(names, glob):
                raise SpecError(f"{where}: {glob!r} matches no tensor of the model's state dict; its names are "
                                f"{names[:24]}{' ...' if len(names) > 24 else ''}")
        chosen = {n for g in self.include for n in fnmatch.filter(names, g)} if self.include else set(names)
        return chosen - {n for g in self.exclude for n in fnmatch.filter(names, g)}


@dataclass(frozen=True)
class SweepSpec:
    name: str = ""
    kind: str = "init_to_final"  # I1/I4/I7: init_to_final, I2: step_to_final, I5, I6
    alpha: AlphaGrid = AlphaGrid()
    splits: tuple[str, ...] = ("test",)
    # "interpolate" | "reset": re-estimate BN running stats at each alpha | "repair": REPAIR's per-unit
    # mean/std correction of every hidden layer at each alpha (nets without BatchNorm too)
    bn: str = "interpolate"
    bn_batches: int = 20  # training batches used to re-estimate BN statistics ("reset") or unit statistics ("repair")
    random_scale: float = 4.0  # random_to_final: theta_r = random_scale * (a fresh init draw)
    chunk: int = 0  # α per work item; 0 chooses it from the model's cost (~1e13 FLOP per item)
    examples: int = 1000  # function_map: τ/κ on the first N test examples (B: 1000)
    beta: AlphaGrid = AlphaGrid(start=-1.0, stop=1.0, num=21)  # planes: the grid's second axis
    filter_norm: bool = False  # random_plane: filter-normalised directions (Li et al. 2018)
    metrics: tuple[str, ...] = ()  # line sweeps: extra per-example metrics ("top5_error", "pkg.module:fn")
    # final_to_final: "weights" permutes θ_T(j)'s hidden units to match θ_T(i) before interpolating (weight
    # matching, Ainsworth et al. 2023; MLPs, VGG-16, CIFAR ResNets), so the barrier left is not one of unit order;
    # "activations": by the correlation of their activations on `bn_batches` fixed training batches (their §3.1)
    align: str = "none"
    # instability (Frankle et al. 2020, LMC): two children of each replicate spawned at each of these
    # checkpoint steps, trained on to T with their own data order; the line runs between the children
    spawn_steps: tuple[int, ...] = ()
    # line sweeps: up to `refine` extra α per curve, bisecting around its barrier peak until a level moves
    # the barrier by less than refine_tol (loss units); see sweep/refine.py
    refine: int = 0
    refine_tol: float = 1e-3
    sharpness: SharpnessSpec = SharpnessSpec()  # λ_max and tr(H) at chosen points of the line (line sweeps)
    # line sweeps: interpolate only the state-dict tensors these globs name (include: all when empty; exclude
    # wins), the rest held at θ_b's values (hold = "b") or θ_a's ("a") — e.g. the backbone, not the head
    params: ParamsSpec = ParamsSpec()
    hold: str = "b"
    curve: CurveSpec = CurveSpec()  # curve sweeps: the bend's shape and training (BN recomputed at every t)
    # examples of "train_subset": filled in from eval.train_examples for sweeps that name it (so it is in
    # the sweep's hash), 0 for the rest; set eval.train_examples, not this
    train_examples: int = 0
    # ties: trim each task vector tensor by tensor to its ⌊density·n⌋ largest entries ("tensor", mergekit's: one
    # tensor in memory at a time) or over the whole vector ("global", the paper's code); evaluate/merges.py
    trim: str = "tensor"
    # the content of the multiple-choice tasks among its splits ({split: sha256 or built-in version}, JSON), filled
    # in by raysweep.validate from data.tasks (in the sweep's hash: a changed task file is new rows); set it never
    tasks: str = ""
    # a plugin kind's own options ([sweeps.options] in TOML, kept as canonical JSON), checked by its module
    options: str = "{}"
    # a plugin kind's code: the sha256 of its module's source, filled in by raysweep.validate (in the sweep's
    # hash: changed code is a new sweep; the trained weights are kept); set it never
    code: str = ""

    def split_sizes(self, sizes: dict) -> list[int]:
        """Examples per split of this sweep, from a dataset's split sizes ("train_subset": its subset)."""
        return [min(self.train_examples, sizes["train"]) if s == TRAIN_SUBSET else sizes.get(s, sizes["test"])
                for s in self.splits]

    def problems(self, where: str) -> list[str]:
        out = []
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            out.append(f"{where}.name must be a non-empty name of letters, digits, '_' or '-', got {self.name!r}")
        if self.kind not in SWEEP_KINDS and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", self.kind):
            out.append(f"{where}.kind = {self.kind!r} is neither a built-in kind ({list(SWEEP_KINDS)}) nor a plain "
                       f"name of a plugin's kind")
        if self.options != "{}" and self.kind in SWEEP_KINDS:
            out.append(f"{where}.options are a plugin kind's own; the built-in {self.kind!r} takes its settings from "
                       f"the sweep's fields")
        out += _choice(f"{where}.bn", self.bn, BN_MODES)
        for s in self.splits:
            if s not in SPLITS and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", s):
                out.append(f"{where}.splits: {s!r} is neither train, test nor a plain name of a split the dataset adds")
        if not self.splits:
            out.append(f"{where}.splits is empty; give at least one of {list(SPLITS)}")
        out += self.alpha.problems(f"{where}.alpha")
        out += metric_name_problems(f"{where}.metrics", self.metrics)
        if self.metrics and self.kind not in POINT_KINDS:
            out.append(f"{where}.metrics: extra metrics are recorded by line and curve sweeps ({list(POINT_KINDS)})")
        if self.bn == "repair" and self.kind not in LINE_KINDS:
            out.append(f"{where}.bn = \"repair\" corrects the units along a line: give it to a line sweep "
                       f"({list(LINE_KINDS)}), or use bn = \"reset\"")
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
        out += _choice(f"{where}.align", self.align, ("none", "weights", "activations"))
        out += self.sharpness.problems(f"{where}.sharpness")
        out += _choice(f"{where}.hold", self.hold, ("a", "b"))
        if self.params.on and self.kind not in LINE_KINDS:
            out.append(f"{where}.params is for line sweeps ({list(LINE_KINDS)})")
        if self.sharpness.on and self.kind not in LINE_KINDS:
            out.append(f"{where}.sharpness is for line sweeps ({list(LINE_KINDS)})")
        if self.align != "none" and self.kind not in ("final_to_final", "curve"):
            out.append(f"{where}.align is for final_to_final and curve sweeps (two solutions); this sweep is "
                       f"{self.kind!r}")
        out += self.curve.problems(f"{where}.curve")
        if self.curve != CurveSpec() and self.kind not in CURVE_KINDS:
            out.append(f"{where}.curve is for curve sweeps (kind = \"curve\"); this sweep is {self.kind!r}")
        if self.kind in CURVE_KINDS and not self.alpha.problems("") and not all(
                0 <= t <= 1 for t in self.alpha.points()):
            out.append(f"{where}.alpha: a curve is evaluated at t in [0, 1]; e.g. alpha = {{start = 0, stop = 1, "
                       f"num = 61}}")
        if self.kind in ("ties", "dare", "dare_ties", "slerp") and not self.alpha.problems(""):
            lo, hi = min(self.alpha.points()), max(self.alpha.points())
            if self.kind == "ties" and not 0 < lo <= hi <= 1:
                out.append(f"{where}.alpha: TIES sweeps its density (the fraction of each task vector kept) over "
                           f"(0, 1]; e.g. alpha = {{start = 0.1, stop = 1, num = 10}}")
            if self.kind in ("dare", "dare_ties") and not 0 <= lo <= hi < 1:
                out.append(f"{where}.alpha: DARE sweeps its drop rate over [0, 1); e.g. alpha = {{start = 0, "
                           f"stop = 0.9, num = 10}}")
            if self.kind == "slerp" and not 0 <= lo <= hi <= 1:
                out.append(f"{where}.alpha: SLERP sweeps t over [0, 1] (one fine-tune at 0, the other at 1); e.g. "
                           f"alpha = {{start = 0, stop = 1, num = 11}}")
        out += _choice(f"{where}.trim", self.trim, ("tensor", "global"))
        if self.trim != "tensor" and self.kind != "ties":
            out.append(f"{where}.trim is for ties sweeps (how TIES trims a task vector); this sweep is {self.kind!r}")
        if self.kind in CURVE_KINDS and self.bn == "repair":
            out.append(f"{where}.bn: a curve's BatchNorm statistics are recomputed at every t (bn = \"reset\"); "
                       f"REPAIR is for line sweeps")
        return out
