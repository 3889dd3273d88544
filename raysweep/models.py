"""MODELS registry: name -> builder(ModelSpec, in_shape, num_classes) -> nn.Module."""
from __future__ import annotations

import functools

import torch
from torch import nn

from raysweep.errors import SpecError
from raysweep.lm import causal_lm
from raysweep.plugins import Registry, load_object
from raysweep.spec import ModelSpec, is_import_path


class Maxout(nn.Module):
    """Linear layer with `pieces` linear units per output, keeping the max (Goodfellow et al. 2013)."""

    def __init__(self, d_in: int, d_out: int, pieces: int):
        super().__init__()
        self.pieces, self.d_out = pieces, d_out
        self.linear = nn.Linear(d_in, d_out * pieces)

    def forward(self, x):
        return self.linear(x).view(*x.shape[:-1], self.d_out, self.pieces).amax(-1)


ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class UnscaledDropout(nn.Module):
    """Dropout that zeroes inputs with probability p and does not rescale the survivors, so training
    sees (1-p)·x on average and evaluation sees x (pylearn2's Dropout cost with input_scales = 1)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        return x * torch.empty_like(x).bernoulli_(1 - self.p)


def mlp(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Fully connected net: [dropout] -> (linear [BN] act [dropout]) x len(hidden) -> linear."""
    d_in = 1
    for d in in_shape:
        d_in *= d
    layers: list[nn.Module] = [nn.Flatten()]
    if spec.input_dropout:
        layers.append(nn.Dropout(spec.input_dropout) if spec.input_dropout_rescale
                      else UnscaledDropout(spec.input_dropout))
    for width in spec.hidden:
        if spec.activation == "maxout":
            layers.append(Maxout(d_in, width, spec.maxout_pieces))
        else:
            layers.append(nn.Linear(d_in, width))
            if spec.batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(ACTIVATIONS[spec.activation]())
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        d_in = width
    layers.append(nn.Linear(d_in, num_classes))
    model = nn.Sequential(*layers)
    if spec.init == "uniform":
        model.after_init = functools.partial(_uniform_init, ranges=spec.init_range)
    return model


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """An MLP's linear layers in order (a maxout layer's one linear map counts once): what
    model.init_range and train.max_norm are given per."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _uniform_init(model: nn.Module, ranges: tuple[float, ...]) -> None:
    """pylearn2's irange init: W ~ U(-r, r) per layer (r = 0: zeros, as sparse_init = 0), biases 0."""
    with torch.no_grad():
        for layer, r in zip(linear_layers(model), ranges, strict=True):
            layer.weight.uniform_(-r, r) if r > 0 else layer.weight.zero_()
            layer.bias.zero_()


def apply_max_norm(model: nn.Module, limits: tuple[float, ...]) -> None:
    """pylearn2's max_col_norm: each unit's incoming weight vector (a row of W here, a column of
    pylearn2's W) is scaled down to norm `limit` when longer: w · min(|w|, c) / (1e-7 + |w|)."""
    with torch.no_grad():
        for layer, limit in zip(linear_layers(model), limits, strict=True):
            norms = layer.weight.norm(dim=1, keepdim=True)
            layer.weight.mul_(norms.clamp(max=limit) / (1e-7 + norms))


def lenet_300_100(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """LeNet-300-100 (F, OpenLTH mnist_lenet_300_100): 784-300-100-10, ReLU. 266,610 parameters."""
    return mlp(ModelSpec(hidden=(300, 100), activation="relu"), in_shape, num_classes)


class ResidualBlock(nn.Module):
    """Two 3x3 conv+BN; a 1x1 conv+BN shortcut where the shape changes (OpenLTH's CIFAR ResNet)."""

    def __init__(self, c_in: int, c_out: int, downsample: bool):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if downsample or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: 16/32/64 filters, n blocks per stage, global average pool."""

    def __init__(self, depth: int, num_classes: int, width: int = 16):
        super().__init__()
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, c_in = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(ResidualBlock(c_in, c_out, downsample=stage > 0 and i == 0))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        out = self.blocks(torch.relu(self.bn(self.conv(x))))
        return self.fc(out.mean((2, 3)))


def cifar_resnet_20(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return CifarResNet(20, num_classes)


VGG16_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


class CifarVGG(nn.Module):
    """OpenLTH's cifar_vgg_16: conv(bias)+BN+ReLU, 4 max-pools, 2x2 average pool, Linear(512, classes)."""

    def __init__(self, plan, num_classes: int):
        super().__init__()
        layers, c_in = [], 3
        for v in plan:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
                c_in = v
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.fc(nn.functional.avg_pool2d(self.features(x), 2).flatten(1))


def cifar_vgg_16(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return CifarVGG(VGG16_PLAN, num_classes)


def resnet50(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """torchvision's ResNet-50 (25,557,032 parameters with 1000 classes)."""
    from torchvision.models import resnet50 as tv_resnet50

    return tv_resnet50(weights=None, num_classes=num_classes)


def resnet18(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 (11,689,512 parameters with 1000 classes)."""
    from torchvision.models import resnet18 as tv_resnet18

    return tv_resnet18(weights=None, num_classes=num_classes)


class ScalarProduct(nn.Module):
    """G §4: y = w1·w2·x, two scalar weights (a depth-2 linear regression), small random init."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(()) * 0.1)
        self.w2 = nn.Parameter(torch.randn(()) * 0.1)

    def forward(self, x):
        return self.w1 * self.w2 * x.reshape(len(x), -1)[:, :1]


def scalar_product(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return ScalarProduct()


def factored_linear(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """G App. C: a deep factored linear model W_k … W_1 x (no biases, no non-linearities);
    len(hidden) + 1 matrices (hidden = [64] * 9 gives G's 10)."""
    d_in = 1
    for d in in_shape:
        d_in *= d
    widths = [d_in, *spec.hidden, num_classes]
    model = nn.Sequential(nn.Flatten(), *[nn.Linear(a, b, bias=False) for a, b in zip(widths, widths[1:])])
    model.after_init = _variance_preserving  # kaiming's ReLU gain √2 would grow the signal 2^depth-fold
    return model


def _variance_preserving(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(2 ** -0.5)


# name -> builder(spec, in_shape, num_classes) -> nn.Module; yours: @register_model("mynet") in a plugin module
MODELS = Registry("model")
register_model = MODELS.register
for _name, _builder in (("scalar_product", scalar_product), ("factored_linear", factored_linear), ("mlp", mlp),
                        ("lenet_300_100", lenet_300_100), ("cifar_resnet_20", cifar_resnet_20),
                        ("cifar_vgg_16", cifar_vgg_16), ("resnet50", resnet50), ("resnet18", resnet18),
                        ("causal_lm", causal_lm)):  # causal_lm: a transformers language model (raysweep/lm.py)
    register_model(_name)(_builder)


def init_weights(model: nn.Module) -> None:
    """OpenLTH init (models/initializers.py kaiming_normal, bn_initializers.py uniform): kaiming_normal
    (fan_in) on conv/linear weights only — biases keep the default nn.Linear/nn.Conv2d init drawn when
    the module was built, U(-1/√fan_in, 1/√fan_in) — and BN γ ~ U[0,1), β = 0."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.uniform_(m.weight)
            nn.init.zeros_(m.bias)


def _user_model(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A model by import path (raysweep.plugins' contract): build(in_shape, num_classes, **kwargs)."""
    model = load_object(spec.name, "model.name")(tuple(in_shape), num_classes, **spec.options())
    if not isinstance(model, nn.Module):
        raise SpecError(f"model.name = {spec.name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def build_model(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int, seed: int | None = None) -> nn.Module:
    """Build a registered model, or the user's (an import path, which initialises itself); with a
    seed, deterministically from that seed."""
    if is_import_path(spec.name):
        if seed is None:
            return _user_model(spec, in_shape, num_classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _user_model(spec, in_shape, num_classes)
    builder = MODELS.lookup(spec.name, "model.name")
    if seed is None:
        return builder(spec, in_shape, num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(spec, in_shape, num_classes)
        if spec.init != "default" and not getattr(model, "own_init", False):  # default: the modules' own init
            init_weights(model)
        if hasattr(model, "after_init"):  # a model whose init departs from OpenLTH's says so itself
            # (it runs after OpenLTH's, so it draws from the same seeded stream)
            model.after_init(model)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=16)
def forward_flops(spec: ModelSpec, in_shape: tuple[int, ...], num_classes: int) -> int:
    """FLOPs of one example's forward pass, counted on the meta device (no memory, no data)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(spec, in_shape, num_classes).eval()
        x = example_batch(model, in_shape, num_classes, 2)[0]
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    except (RuntimeError, NotImplementedError):  # data-dependent code (transformers' masks) cannot run on meta
        if not takes_tokens(model):
            raise
        # a language model's forward: 2 FLOPs per parameter per token (Kaplan et al. 2020's estimate)
        return 2 * count_parameters(model) * int(in_shape[0])
    return counter.get_total_flops() // 2


def takes_tokens(model: nn.Module) -> bool:
    """Whether the model's input is token ids (a language model's), not real-valued features or images."""
    return getattr(model, "input_dtype", None) in (torch.long, torch.int32) or hasattr(model, "get_input_embeddings")


def example_batch(model: nn.Module, in_shape: tuple[int, ...], num_classes: int, n: int,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of n examples as the model takes them, for probes (FLOPs, timings): Gaussian inputs with class
    labels, or for a language model token ids with next-token targets of the same shape (N, T)."""
    meta = any(p.is_meta for p in model.parameters())
    def make(f, *a, **k):
        return f(*a, **k, device="meta") if meta else f(*a, **k, generator=generator)
    classes = max(num_classes, 1)
    if takes_tokens(model):
        return make(torch.randint, 0, classes, (n, *in_shape)), make(torch.randint, 0, classes, (n, *in_shape))
    return make(torch.randn, (n, *in_shape)), make(torch.randint, 0, classes, (n,))
