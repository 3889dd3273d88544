"""The jobs' settings against their sources: OpenLTH's init and CIFAR-10 normalisation, and the pylearn2
configs G cites (scripts/papers/dropout/mnist_valid.yaml, scripts/papers/maxout/mnist_pi.yaml), with
the schedules checked against plain re-implementations of pylearn2's own update rules."""
import numpy as np
import pytest
import torch
from conftest import make_job
from datafiles import write_cifar10
from torch import nn
from torchvision import transforms as T

from raysweep.data import load_splits
from raysweep.jobs import load_job
from raysweep.models import UnscaledDropout, apply_max_norm, build_model, linear_layers
from raysweep.spec import DataSpec, ModelSpec
from raysweep.train.loop import learning_rate, momentum, train_replicate


@torch.no_grad()
def test_openlth_init_keeps_pytorchs_default_biases():
    """OpenLTH's kaiming_normal sets weights only: the biases are the ones nn.Linear drew when built."""
    model = build_model(ModelSpec(name="lenet_300_100"), (1, 28, 28), 10, seed=7)
    torch.manual_seed(7)  # the same draws, made by plain torch modules built in the same order
    reference = [nn.Linear(784, 300), nn.Linear(300, 100), nn.Linear(100, 10)]
    for layer, ref in zip(linear_layers(model), reference, strict=True):
        assert torch.equal(layer.bias, ref.bias)
        fan_in = layer.weight.shape[1]
        assert float(layer.bias.abs().max()) <= fan_in ** -0.5  # U(±1/√fan_in)
        assert float(layer.weight.std()) == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)  # kaiming, fan_in
        assert not torch.equal(layer.weight, ref.weight)
    vgg = build_model(ModelSpec(name="cifar_vgg_16"), (3, 32, 32), 10, seed=0)
    convs = [m for m in vgg.modules() if isinstance(m, nn.Conv2d)]
    assert all(float(c.bias.abs().min()) < float(c.bias.abs().max()) <= c.weight[0].numel() ** -0.5 for c in convs)


def test_default_init_is_left_as_the_modules_drew_it():
    model = build_model(ModelSpec(hidden=(20,), activation="sigmoid", init="default"), (1, 8, 8), 10, seed=3)
    torch.manual_seed(3)
    ref = [nn.Linear(64, 20), nn.Linear(20, 10)]
    assert all(torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
               for a, b in zip(linear_layers(model), ref, strict=True))


def test_cifar10_is_normalised_with_imagenet_statistics(tmp_path):
    """OpenLTH datasets/cifar10.py: Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])."""
    from PIL import Image

    written = write_cifar10(tmp_path)
    d = load_splits(DataSpec(name="cifar10", root=str(tmp_path)))
    image = written["test_batch"][0][5].reshape(3, 32, 32).transpose(1, 2, 0)
    ref = T.Compose([T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])(Image.fromarray(image))
    assert torch.allclose(d.prepare(d.test_x[5:6])[0], ref, atol=1e-6)


# Numbers as written in the yaml files (pylearn2 master).
RELU_YAML = {"dims": (898, 1532), "iranges": (0.00891030471479, 0.0575059125935), "softmax_sparse_init": 0,
             "max_col_norms": (4.378017, 2.970242, 4.626974), "batch_size": 100, "learning_rate": 0.097259,
             "init_momentum": 0.5, "final_momentum": 0.699217, "momentum_start": 1, "momentum_saturate": 698,
             "decay_start": 1, "decay_saturate": 560, "decay_factor": 0.022292, "input_include": 0.8,
             "input_scale": 1.25}
MAXOUT_YAML = {"units": 240, "pieces": 5, "irange": 0.005, "max_col_norm": 1.9365, "batch_size": 100,
               "learning_rate": 0.1, "init_momentum": 0.5, "final_momentum": 0.7, "momentum_start": 1,
               "momentum_saturate": 250, "decay_factor": 1.000004, "min_lr": 0.000001, "input_include": 0.8,
               "input_scale": 1.0}


@pytest.mark.parametrize("name, activation", [("mnist_relu_mlp", "relu"), ("mnist_sigmoid_mlp", "sigmoid")])
def test_dropout_mlp_jobs_quote_mnist_valid_yaml(name, activation):
    y, job = RELU_YAML, load_job(name)
    m, t = job.model, job.train
    assert m.hidden == y["dims"] and m.activation == activation and m.init == "uniform"
    assert m.init_range == (*y["iranges"], float(y["softmax_sparse_init"]))
    assert m.input_dropout == pytest.approx(1 - y["input_include"]) and m.input_dropout_rescale
    assert 1 / (1 - m.input_dropout) == pytest.approx(y["input_scale"])  # 1.25 is inverted dropout's scale
    assert m.dropout == 0.5  # pylearn2 Dropout cost defaults: include 0.5, scale 2
    assert t.max_norm == y["max_col_norms"] and t.batch_size == y["batch_size"] and t.lr == y["learning_rate"]
    assert (t.momentum, t.final_momentum, t.momentum_start, t.momentum_saturate) == (
        y["init_momentum"], y["final_momentum"], y["momentum_start"], y["momentum_saturate"])
    assert (t.lr_decay, t.decay_start, t.decay_saturate, t.decay_factor) == (
        "linear_epoch", y["decay_start"], y["decay_saturate"], y["decay_factor"])
    assert job.data.pixels == "unit" and t.weight_decay == 0


def test_maxout_job_quotes_mnist_pi_yaml():
    y, job = MAXOUT_YAML, load_job("mnist_maxout_mlp")
    m, t = job.model, job.train
    assert m.hidden == (y["units"],) * 2 and m.maxout_pieces == y["pieces"] and m.activation == "maxout"
    assert m.init == "uniform" and m.init_range == (y["irange"],) * 3
    assert m.input_dropout == pytest.approx(1 - y["input_include"])
    assert m.input_dropout_rescale == (y["input_scale"] != 1.0) and m.dropout == 0.5
    assert t.max_norm == (y["max_col_norm"],) * 3 and t.batch_size == y["batch_size"] and t.lr == y["learning_rate"]
    assert (t.momentum, t.final_momentum, t.momentum_start, t.momentum_saturate) == (
        y["init_momentum"], y["final_momentum"], y["momentum_start"], y["momentum_saturate"])
    assert (t.lr_decay, t.decay_factor, t.min_lr) == ("exponential", y["decay_factor"], y["min_lr"])


class Pylearn2Extensions:
    """pylearn2's LinearDecayOverEpoch, MomentumAdjustor and ExponentialDecay as they count: on_monitor
    runs once before training and after every epoch; ExponentialDecay after every update."""

    def __init__(self, lr, mom, y, exponential=False):
        self.lr0, self.mom0, self.y, self.exponential = lr, mom, y, exponential
        self.count, self.updates = 0, 0
        self.lr, self.mom = lr, mom

    def on_monitor(self):
        y = self.y
        self.count += 1
        a = min(1.0, max(0.0, (self.count - y["momentum_start"]) / (y["momentum_saturate"] - y["momentum_start"])))
        self.mom = self.mom0 * (1 - a) + a * y["final_momentum"]
        if not self.exponential:
            step = (self.lr0 - self.lr0 * y["decay_factor"]) / (y["decay_saturate"] - y["decay_start"] + 1)
            if self.count >= y["decay_start"]:
                self.lr = (self.lr0 - step * (self.count - y["decay_start"] + 1) if self.count < y["decay_saturate"]
                           else self.lr0 * y["decay_factor"])

    def after_update(self):
        if self.exponential:
            self.updates += 1
            self.lr = max(self.lr0 / self.y["decay_factor"] ** self.updates, self.y["min_lr"])


@pytest.mark.parametrize("name, yaml, exponential", [("mnist_relu_mlp", RELU_YAML, False),
                                                      ("mnist_maxout_mlp", MAXOUT_YAML, True)])
def test_schedules_follow_pylearn2s_extensions(name, yaml, exponential):
    job = load_job(name, ["train.epochs=800"])
    per_epoch = 7  # any epoch length: both count epochs and updates the same way
    ref = Pylearn2Extensions(job.train.lr, job.train.momentum, yaml, exponential)
    ref.on_monitor()  # before the first epoch
    it = 0
    for epoch in range(800):
        for _ in range(per_epoch):
            assert learning_rate(job, it, per_epoch) == pytest.approx(ref.lr, rel=1e-12)
            assert momentum(job, it, per_epoch) == pytest.approx(ref.mom, rel=1e-12)
            it += 1
            ref.after_update()
        ref.on_monitor()
    if not exponential:
        assert learning_rate(job, it - 1, per_epoch) == pytest.approx(yaml["learning_rate"] * yaml["decay_factor"])
    assert momentum(job, it - 1, per_epoch) == pytest.approx(yaml["final_momentum"])


@torch.no_grad()
def test_max_norm_is_pylearn2s_max_col_norm():
    layer = nn.Linear(5, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4, 0, 0, 0], [0.1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 6]]))
    model = nn.Sequential(layer)
    w = layer.weight.detach().numpy().T.copy()  # pylearn2's W is (inputs, units): one column per unit
    col = np.sqrt((w ** 2).sum(axis=0))
    expected = w * (np.clip(col, 0, 2.5) / (1e-7 + col))
    apply_max_norm(model, (2.5,))
    assert np.allclose(layer.weight.detach().numpy().T, expected, atol=1e-7)
    assert float(layer.weight.norm(dim=1).max()) == pytest.approx(2.5, abs=1e-6)


@torch.no_grad()
def test_uniform_init_and_unscaled_input_dropout():
    spec = ModelSpec(hidden=(300, 200), activation="relu", init="uniform", init_range=(0.05, 0.01, 0.0),
                     input_dropout=0.2, input_dropout_rescale=False)
    model = build_model(spec, (1, 28, 28), 10, seed=0)
    for layer, r in zip(linear_layers(model), (0.05, 0.01, 0.0), strict=True):
        assert float(layer.weight.abs().max()) <= r and torch.all(layer.bias == 0)
        if r:
            assert float(layer.weight.std()) == pytest.approx(r / 3 ** 0.5, rel=0.05)  # U(−r, r)
    assert float(linear_layers(model)[2].weight.abs().sum()) == 0
    drop = UnscaledDropout(0.2).train()
    x = torch.ones(200_000)
    kept = drop(x)
    assert set(kept.unique().tolist()) == {0.0, 1.0} and float(kept.mean()) == pytest.approx(0.8, abs=0.01)
    assert torch.equal(drop.eval()(x), x)


def test_a_pylearn2_style_job_trains_within_its_norm_limits(tmp_path):
    from raysweep.io.store import Store

    job = make_job(model={"name": "mlp", "hidden": [16], "init": "uniform", "init_range": [0.05, 0.0],
                          "input_dropout": 0.2, "input_dropout_rescale": False, "dropout": 0.5},
                   train__max_norm=[0.5, 0.3], train__lr_decay="exponential", train__decay_factor=1.001,
                   train__final_momentum=0.7, train__momentum_saturate=2, train__momentum=0.5)
    store = Store(str(tmp_path))
    train_replicate(job, 0, store)
    from raysweep.io import paths
    from raysweep.io.checkpoints import load_tensors
    from raysweep.io.manifests import read_manifests

    manifests = read_manifests(store, job, 0)
    last = max(manifests)
    w = load_tensors(store, paths.checkpoint(paths.run_dir(job.name, job.hash), 0, last), manifests[last]["sha256"])
    assert float(w["2.weight"].norm(dim=1).max()) <= 0.5 + 1e-6 and float(w["5.weight"].norm(dim=1).max()) <= 0.3 + 1e-6
    assert float(w["5.weight"].abs().sum()) > 0  # the zero-initialised softmax learned


def test_settings_that_do_not_fit_the_model_are_refused():
    from raysweep.errors import SpecError

    with pytest.raises(SpecError, match="init_range"):
        make_job(model={"name": "mlp", "hidden": [16], "init": "uniform", "init_range": [0.1]})
    with pytest.raises(SpecError, match="max_norm"):
        make_job(train__max_norm=[1.0])
    with pytest.raises(SpecError, match="decay_saturate"):
        make_job(train__lr_decay="linear_epoch")
