"""How a job runs, not what it trains: evaluation settings and the resources of trials and actors."""
from __future__ import annotations

from dataclasses import dataclass

from raysweep.spec.names import choice_problems as _choice

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class EvalSpec:
    batch_size: int = 1000
    device: str = "auto"  # auto | cpu | cuda
    # fp32 (TF32 matmuls on CUDA) | bf16 (autocast on CUDA: faster, less exact) | auto (bf16 when train.amp)
    precision: str = "fp32"
    channels_last: bool = True  # NHWC inputs and weights for models with 2-D convolutions (CPU and CUDA: faster, exact)
    compile: bool = False  # torch.compile the evaluated model (inductor: on CPUs it needs a C++ compiler)
    compile_mode: str = "default"  # torch.compile's mode; "reduce-overhead": CUDA graphs (weights change in place)
    first_layer: bool = True  # mix the first layer's outputs instead of recomputing them (exact)
    first_layer_bytes: int = 1 << 30  # at most this much device memory for the cached first-layer outputs
    fold_bn: bool = True  # fold each conv → BatchNorm pair into one convolution per point (evaluate/fold.py)
    # on CPUs, convolutional models take batches of at most this many (cache-bound); 0: batch_size
    cpu_batch_size: int = 64
    # sweeps' "train_subset" split: this many training examples, a fixed seeded choice (F evaluated only
    # ImageNet's test split, the training set being too big; a 50,000-example subset is as big as that)
    train_examples: int = 50_000
    # where a line's two ends (a task-vector merge's θ_pre and fine-tunes) are held: "device" — copied onto the
    # evaluating device (fastest), or "mapped" — their files memory-mapped on the host and θ(α) (each merged tensor)
    # written into the model tensor by tensor from them, so an actor holds one model on its device plus the page
    # cache, shared by every actor of the node
    ends: str = "device"

    def problems(self, where: str) -> list[str]:
        out = _choice(f"{where}.device", self.device, ("auto", "cpu", "cuda"))
        out += _choice(f"{where}.ends", self.ends, ("device", "mapped"))
        out += _choice(f"{where}.precision", self.precision, ("fp32", "bf16", "auto"))
        out += _choice(f"{where}.compile_mode", self.compile_mode, COMPILE_MODES)
        out += [] if 1 <= self.batch_size <= 1 << 24 else [f"{where}.batch_size must be in [1, 2**24]"]
        out += [] if 0 <= self.cpu_batch_size <= 1 << 24 else [f"{where}.cpu_batch_size must be in [0, 2**24]"]
        out += [] if 1 <= self.train_examples <= 1 << 24 else [f"{where}.train_examples must be in [1, 2**24]"]
        return out + ([f"{where}.first_layer_bytes must be >= 0"] if self.first_layer_bytes < 0 else [])


@dataclass(frozen=True)
class ResourcesSpec:
    accelerator: str = "auto"  # gpu: GPUs required (waits for the autoscaler) | auto | cpu (cluster/policy.py)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = -1.0  # -1: 1 when the job runs on GPUs (accelerator), else 0
    eval_actors: int = 0  # 0: one per GPU, or one per CPU when there are no GPUs
    gpus_per_actor: float = -1.0  # -1: 1 when the job runs on GPUs (accelerator), else 0
    # data-parallel replicates: a replicate trains on this many Ray Train workers (DDP; NCCL on GPUs, gloo on
    # CPUs), each with cpus_per_trial CPUs; 0: one per GPU of gpus_per_trial when that is more than 1, else 1
    workers_per_trial: int = 0
    # memory one sweep actor may use, GiB, that `raysweep show` and `raysweep run` check a plan against; 0: read
    # where the actor runs (a GPU actor: its GPU's memory times gpus_per_actor; a CPU actor: its share of the RAM)
    actor_memory_gb: float = 0.0

    @property
    def workers(self) -> int:
        """Ranks per replicate."""
        if self.workers_per_trial:
            return self.workers_per_trial
        return int(self.gpus_per_trial) if self.gpus_per_trial > 1 else 1

    def problems(self, where: str) -> list[str]:
        out = _choice(f"{where}.accelerator", self.accelerator, ("auto", "gpu", "cpu"))
        if not 0 <= self.actor_memory_gb <= 1 << 20:
            out.append(f"{where}.actor_memory_gb must be in [0, 2**20] GiB (0: read from the machine)")
        if not 0 <= self.workers_per_trial <= 4096:
            out.append(f"{where}.workers_per_trial must be in [0, 4096] (0: one per GPU of gpus_per_trial)")
        elif self.gpus_per_trial > 1 and self.workers_per_trial and self.gpus_per_trial % self.workers_per_trial:
            out.append(f"{where}.gpus_per_trial = {self.gpus_per_trial:g} does not split evenly over "
                       f"workers_per_trial = {self.workers_per_trial}")
        out += [] if self.cpus_per_trial > 0 else [f"{where}.cpus_per_trial must be > 0"]
        for key in ("gpus_per_trial", "gpus_per_actor"):
            value = getattr(self, key)
            if not (value == -1 or 0 <= value <= 64):
                out.append(f"{where}.{key} must be -1 (decided by accelerator) or a number of GPUs in [0, 64]")
            elif self.accelerator == "cpu" and value > 0:
                out.append(f"{where}.{key} = {value:g} asks for GPUs but {where}.accelerator = \"cpu\"; "
                           f"drop one of the two")
        return out + ([f"{where}.eval_actors must be >= 0"] if self.eval_actors < 0 else [])
