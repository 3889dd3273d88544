"""Typed, frozen job specs: the dataclasses, their defaults and their validation (``problems``).

A job is data (``jobs/<name>.toml``). Parsing refuses unknown keys and wrong types with a message
that names the key and what is valid; ``problems`` refuses impossible values. The training hash
covers the non-default fields that change trained weights (data, model, train, seed), so adding a
field with a default keeps old hashes valid; each sweep has a hash of its own, so changing an α
grid never retrains anything. This package is the base layer: it imports only ``raysweep.errors``.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import PurePath

from raysweep.errors import SpecError  # noqa: F401  (raysweep.spec.SpecError: the spec's error)
from raysweep.spec.hashing import NOT_WEIGHTS, job_hash
from raysweep.spec.names import choice_problems as _choice
from raysweep.spec.names import kwargs_options, kwargs_problems, name_problems
from raysweep.spec.runtime import EvalSpec, ResourcesSpec
from raysweep.spec.sweeps import SPLITS, TRAIN_SUBSET, SweepSpec

SCHEDULES = ("frankle", "every_epoch", "list")
INITS = ("openlth", "uniform", "default")
# the registries' names (raysweep.models.MODELS, raysweep.data.DATASETS), so validating a job imports no torch
BUILTIN_MODELS = ("scalar_product", "factored_linear", "mlp", "lenet_300_100", "cifar_resnet_20", "cifar_vgg_16",
                  "resnet18", "resnet50", "causal_lm")
BUILTIN_DATASETS = ("digits", "digits_shifted", "blobs", "mnist", "fashion_mnist", "cifar10", "imagenet", "linreg",
                    "standin", "pydoc", "text")
PIXELS = ("standardized", "unit")
LR_DECAYS = ("step", "linear_epoch", "exponential")
MAX_REPLICATES = 10_000
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}"  # job names: plain identifiers, they name folders


# multiple-choice tasks raysweep builds itself (data/tasks.py): name -> the version of its content, in the hash of
# the sweeps that name it
BUILTIN_TASKS = {"pydoc_cloze": "pydoc_cloze-1"}
HARNESS = "lm_eval:"  # a data.tasks entry "lm_eval:<task>": a task lm-evaluation-harness runs (evaluate/harness.py)


def task_split(entry: str) -> str:
    """The evaluation split a data.tasks entry becomes: a built-in task's name, an lm-eval task's name, or a .jsonl
    file's stem."""
    if entry.startswith(HARNESS):
        return entry[len(HARNESS):]
    return entry if entry in BUILTIN_TASKS else PurePath(entry).stem


@dataclass(frozen=True)
class DataSpec:
    name: str = "digits"
    root: str = field(default="", metadata=NOT_WEIGHTS)  # where the dataset lives; "" = $RAYSWEEP_DATA or ./data
    num_workers: int = 0  # DataLoader workers for streamed datasets: each has its own augmentation RNG, so hashed
    kwargs: str = "{}"  # a user loader's keyword arguments ([data.kwargs] in TOML), kept as canonical JSON
    # built-in image datasets: standardized ((x/255 − mean)/std, the dataset's own statistics) | unit (x/255 in
    # [0, 1], as pylearn2 feeds MNIST to G's networks)
    pixels: str = "standardized"
    # files: the dataset's own files (data.root) | store: packed into the run's store by `raysweep data pack`
    # (data.name is the packed name; data.root may name a packed folder or URI instead), streamed by Ray Data
    source: str = "files"
    image_size: int = 224  # packed datasets: the side of the training crop and of the evaluation centre crop
    # packed datasets: row groups whose rows an epoch shuffles together (0: as many as fit in about 1 GiB of
    # encoded images per read task, at least 8); a batch mixes rows of up to this many groups
    shuffle_window: int = 0
    # text (pydoc, text): tokens per window; the tokenizer ("" = bytes: UTF-8 bytes and an end-of-document
    # token, 257 ids; else a tokenizer.json file, or a folder holding one, e.g. a Hugging Face model's); which
    # training documents ((part, parts): those whose index i has i % parts == part; (0, 1): all)
    seq_len: int = 128
    tokenizer: str = ""
    part: tuple[int, ...] = (0, 1)
    # text: windows (documents joined, then cut: no padding but the last window) | documents (each document cut
    # on its own, its last window padded: no window spans two documents)
    packing: str = "windows"
    # text: multiple-choice tasks, each an evaluation split named after it ("pydoc_cloze", built in, or a .jsonl
    # file of {"context", "choices", "label"}: the split is its stem); data/tasks.py. Not in the job's hash (no
    # weight changes): a sweep that names a task's split carries its content digest (SweepSpec.tasks)
    tasks: tuple[str, ...] = field(default=(), metadata=NOT_WEIGHTS)
    # tasks "lm_eval:<name>" are run by lm-evaluation-harness on the live model (`pip install lm-eval`): from this
    # folder of task YAML files (their data local), else from lm-eval's own catalogue (which downloads datasets)
    lm_eval_include: str = field(default="", metadata=NOT_WEIGHTS)

    def options(self) -> dict:
        return kwargs_options(self.kwargs)

    def problems(self, where: str) -> list[str]:
        out = kwargs_problems(where, self.kwargs) + _choice(f"{where}.pixels", self.pixels, PIXELS)
        out += _choice(f"{where}.source", self.source, ("files", "store"))
        out += [] if 8 <= self.image_size <= 4096 else [f"{where}.image_size must be in [8, 4096]"]
        out += [] if 0 <= self.shuffle_window <= 1 << 20 else [
            f"{where}.shuffle_window must be in [0, 2**20] row groups (0: sized to about 1 GiB)"]
        out += [] if 1 <= self.seq_len <= 1 << 20 else [f"{where}.seq_len must be in [1, 2**20] tokens"]
        out += _choice(f"{where}.packing", self.packing, ("windows", "documents"))
        stems = [task_split(t) for t in self.tasks]
        for task, stem in zip(self.tasks, stems):
            if task not in BUILTIN_TASKS and not task.endswith(".jsonl") and not task.startswith(HARNESS):
                out.append(f"{where}.tasks: {task!r} is neither a built-in task ({', '.join(BUILTIN_TASKS)}), a "
                           f".jsonl file nor an lm-evaluation-harness task (\"{HARNESS}<task name>\")")
            elif not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", stem) or stem in ("train", "test", "train_subset"):
                out.append(f"{where}.tasks: {task!r} would be the split {stem!r}; name the file as a plain split name "
                           f"(letters, digits, '_'; not train or test)")
        if any(t.startswith(HARNESS) for t in self.tasks) and not self.tokenizer:
            out.append(f"{where}.tasks: lm-evaluation-harness tokenizes with a Hugging Face tokenizer: set "
                       f"{where}.tokenizer to the model's folder (its tokenizer files), not the built-in bytes")
        if self.lm_eval_include and not any(t.startswith(HARNESS) for t in self.tasks):
            out.append(f"{where}.lm_eval_include is the folder of lm-eval task files for tasks named "
                       f"\"{HARNESS}<task>\" in {where}.tasks; none is")
        if self.tasks and self.name not in ("pydoc", "text"):
            out.append(f"{where}.tasks are multiple-choice tasks for language models, read by the text datasets "
                       f"(pydoc, text); data.name is {self.name!r}")
        if len(set(stems)) != len(stems):
            out.append(f"{where}.tasks: two tasks would be one split ({stems}); give the files different names")
        if len(self.part) != 2 or not 0 <= self.part[0] < self.part[1] <= 1 << 20:
            out.append(f"{where}.part must be [part, parts] with 0 <= part < parts (e.g. [1, 2]: the second half of "
                       f"the documents, by index), got {list(self.part)}")
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
    # uniform: MLP weights ~ U(-r, r) with r = init_range[i] per linear layer (0: zeros), zero biases
    # (pylearn2's irange);
    # default: PyTorch's (= Torch7's) nn.Linear/Conv2d init, weights and biases ~ U(±1/√fan_in)
    init: str = "openlth"
    init_range: tuple[float, ...] = ()
    input_dropout_rescale: bool = True  # False: input dropout without 1/(1-p) scaling (pylearn2 input_scales = 1)
    kwargs: str = "{}"  # a user builder's keyword arguments ([model.kwargs] in TOML), kept as canonical JSON
    # causal_lm: its transformers config ([model.config] in TOML: model_type and fields, or from = a folder holding
    # config.json), kept as canonical JSON
    config: str = "{}"

    def options(self) -> dict:
        return kwargs_options(self.kwargs)

    def problems(self, where: str) -> list[str]:
        out = [] if self.name == "causal_lm" or self.config == "{}" else [
            f"{where}.config is the transformers config of model.name = 'causal_lm'; {self.name!r} takes none"]
        if kwargs_problems(where, self.config):
            out.append(f"{where}.config must be a table, e.g. [{where}.config] model_type = 'gpt2'")
        out += _choice(f"{where}.activation", self.activation, ("relu", "sigmoid", "tanh", "maxout"))
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
    # fine-tuning: every replicate starts from this checkpoint (a file or s3:// URI; safetensors or torch.save,
    # read without pickle), so step 0 is the pretrained weights; its content's sha256 is in the run hash
    init_from: str = field(default="", metadata=NOT_WEIGHTS)  # hashed by content (its sha256), not by path
    freeze: tuple[str, ...] = ()  # globs over state-dict names of parameters kept at their initial values
    # sgd (momentum, weight decay in the gradient) | adam | adamw (decoupled weight decay); Adam's moments
    # are kept in the resume state like SGD's momentum buffers
    optimizer: str = "sgd"
    betas: tuple[float, ...] = (0.9, 0.999)  # adam / adamw
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
    # MLP: each unit's incoming weight norm capped after every step, one per linear layer
    max_norm: tuple[float, ...] = ()
    checkpoints: str = "frankle"  # frankle | every_epoch | list
    steps: tuple[int, ...] = ()  # extra steps to save (the schedule when checkpoints = "list")
    log_splits: tuple[str, ...] = field(default=("train", "test"), metadata=NOT_WEIGHTS)  # evaluated at each checkpoint
    loss: str = "auto"  # auto | cross_entropy | squared_error | pkg.module:fn (per-example; see evaluate/losses.py)
    amp: bool = False  # bf16 autocast on CUDA
    channels_last: bool = False
    # examples per forward/backward when the batch does not fit at once: gradients are accumulated, so each
    # update is the same batch_size update (to float rounding; BatchNorm sees micro-batches). 0: the largest
    # that fits, found once at the start (halving on out-of-memory) and recorded in the manifest
    micro_batch: int = field(default=0, metadata=NOT_WEIGHTS)

    def problems(self, where: str) -> list[str]:
        out = _choice(f"{where}.checkpoints", self.checkpoints, SCHEDULES)
        out += _choice(f"{where}.optimizer", self.optimizer, ("sgd", "adam", "adamw"))
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            out.append(f"{where}.betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.optimizer != "sgd" and (self.momentum or self.momentum_saturate):
            out.append(f"{where}.momentum is SGD's; {where}.optimizer = {self.optimizer!r} uses {where}.betas")
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


def graph_only(sweep) -> str:
    """Why a sweep's option cannot run on a `transformers` language model ("" when it can): activation matching
    and REPAIR follow the model's graph with torch.fx, which cannot trace one."""
    if sweep.align != "activations" and sweep.bn != "repair":
        return ""
    what = 'align = "activations"' if sweep.align == "activations" else 'bn = "repair"'
    return (f"{what} follows the model's graph with torch.fx, which cannot trace a transformers language model; "
            f"use align = \"weights\" (weight matching of its blocks) without bn = \"repair\"")


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
    # sha256 digests of what the job names outside itself ("model.source", "data.source": the user's code;
    # "external": the checkpoint files), filled in by raysweep.validate when a job is loaded; part of the
    # run hash, and carried with the job to every worker so each computes the same hash
    digests: tuple[tuple[str, str], ...] = ()
    # modules of your own that register sweep kinds (and models, datasets, metrics, checkpoint formats) when
    # imported: "package.module", shipped to every worker (raysweep.kinds.load_plugins)
    plugins: tuple[str, ...] = field(default=(), metadata=NOT_WEIGHTS)

    def __post_init__(self):  # sweeps evaluating "train_subset" carry its size, so their hash covers it
        if any(s.train_examples == 0 and TRAIN_SUBSET in s.splits for s in self.sweeps):
            object.__setattr__(self, "sweeps", tuple(
                dataclasses.replace(s, train_examples=self.eval.train_examples)
                if s.train_examples == 0 and TRAIN_SUBSET in s.splits else s for s in self.sweeps))

    def problems(self) -> list[str]:
        """What is wrong with the job as data (ranges, names, combinations). Checks that import the
        user's code, losses or models are raysweep.validate's, one layer up."""
        out = [] if 1 <= self.replicates <= MAX_REPLICATES else [
            f"replicates must be between 1 and {MAX_REPLICATES:,}, got {self.replicates}"]
        if not re.fullmatch(NAME_PATTERN, self.name):
            out.append(f"name = {self.name!r} is not a plain name: use letters, digits, '_' and '-' (at most 100, "
                       f"starting with a letter or digit); it names the run's folder in the store")
        if not 0 <= self.seed < 2**31:
            out.append(f"seed must be in [0, 2**31), got {self.seed}")
        if self.data.source == "store":  # a packed dataset's name (`raysweep data pack --name`)
            out += [] if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", self.data.name) else [
                f"data.name = {self.data.name!r}: with data.source = \"store\" it names a packed dataset "
                f"(`raysweep data pack SOURCE --name NAME`): letters, digits, '_', '-', '.'"]
        else:
            out += name_problems("data.name", self.data.name, BUILTIN_DATASETS, self.data.kwargs, bool(self.plugins))
        out += name_problems("model.name", self.model.name, BUILTIN_MODELS, self.model.kwargs, bool(self.plugins))
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
        world = self.resources.workers
        if world > 1 and self.train.batch_size % world:
            out.append(f"train.batch_size = {self.train.batch_size} does not split evenly over {world} workers "
                       f"(resources.workers_per_trial / gpus_per_trial): each rank takes batch_size / workers")
        if world > 1 and self.external:
            out.append("resources.workers_per_trial: external checkpoints are not trained")
        bad = [p for p in self.plugins if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", p)]
        if bad:
            out.append(f"plugins {bad}: each is a module's import name, e.g. plugins = [\"mypkg.kinds\"]")
        names = [s.name for s in self.sweeps]
        for s in self.sweeps:
            out += s.problems(f"sweeps.{s.name or '?'}")
            if self.model.name == "causal_lm" and graph_only(s):
                out.append(f"sweeps.{s.name}: {graph_only(s)}")
            if self.eval.ends == "mapped" and s.kind == "ties" and s.trim == "global":
                out.append(f"sweeps.{s.name}: trim = \"global\" holds every task vector whole, which eval.ends = "
                           f"\"mapped\" is there to avoid: use trim = \"tensor\" (mergekit's), or eval.ends = "
                           f"\"device\"")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            out.append(f"sweep names must be unique; repeated: {dup}")
        for kind in ("final_to_final", "curve"):
            if any(s.kind == kind for s in self.sweeps) and self.replicates < 2:
                out.append(f"a {kind} sweep needs replicates >= 2 (it connects two replicates' final weights)")
        if self.data.source == "store" or self.data.name == "imagenet":  # its training split is streamed
            out += [f"sweeps.{s.name}.splits names \"train\", but {self.data.name}'s training split is streamed from "
                    f"disk (data.source = \"{self.data.source}\"), never held whole to evaluate: evaluate a fixed "
                    f"subset of it instead (eval.train_examples of it, 50,000 by default) with --set "
                    f"'sweeps.{s.name}.splits=[\"test\",\"{TRAIN_SUBSET}\"]'"
                    for s in self.sweeps if "train" in s.splits]
        for s in self.sweeps:
            if s.train_examples and s.train_examples != self.eval.train_examples or (
                    s.train_examples and TRAIN_SUBSET not in s.splits):
                out.append(f"sweeps.{s.name}.train_examples = {s.train_examples}: the size of the \"{TRAIN_SUBSET}\" "
                           f"split is eval.train_examples ({self.eval.train_examples}) for every sweep; set that "
                           f"instead and leave the sweep's unset")
        return out

    def sweep(self, name: str) -> SweepSpec:
        for s in self.sweeps:
            if s.name == name:
                return s
        raise SpecError(f"job {self.name!r} has no sweep {name!r}; its sweeps are {[s.name for s in self.sweeps]}")

    @property
    def hash(self) -> str:
        """Content hash of the non-default fields that determine the trained weights (spec/hashing.py)."""
        return job_hash(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
