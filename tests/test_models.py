import pytest
import torch

from raysweep.errors import SpecError
from raysweep.models import MODELS, build_model, count_parameters
from raysweep.spec import ModelSpec


@pytest.mark.parametrize("name, shape, classes, params", [
    ("lenet_300_100", (1, 28, 28), 10, 266_610),
    ("cifar_resnet_20", (3, 32, 32), 10, 272_474),
    ("cifar_vgg_16", (3, 32, 32), 10, 14_728_266),
    ("resnet50", (3, 224, 224), 1000, 25_557_032),
    ("resnet18", (3, 224, 224), 1000, 11_689_512),
])
def test_paper_models_have_the_published_sizes(name, shape, classes, params):
    with torch.device("meta"):
        model = build_model(ModelSpec(name=name), shape, classes)
        out = model(torch.empty(2, *shape))
    assert count_parameters(model) == params
    assert tuple(out.shape) == (2, classes)


def test_mlp_variants():
    x = torch.randn(4, 1, 8, 8)
    for act in ("relu", "sigmoid", "tanh", "maxout"):
        m = build_model(ModelSpec(hidden=(7, 5), activation=act, dropout=0.5, maxout_pieces=3), (1, 8, 8), 10, seed=0)
        assert m(x).shape == (4, 10)
    maxout = build_model(ModelSpec(hidden=(7,), activation="maxout", maxout_pieces=3), (1, 8, 8), 10)
    assert count_parameters(maxout) == (64 * 21 + 21) + (7 * 10 + 10)


def test_openlth_init():
    m = build_model(ModelSpec(name="cifar_resnet_20"), (3, 32, 32), 10, seed=0)
    conv = m.blocks[3].conv1.weight
    fan_in = conv[0].numel()
    assert conv.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)  # kaiming normal, fan_in
    assert 0 <= m.bn.weight.min() and m.bn.weight.max() < 1 and torch.all(m.bn.bias == 0)
    again = build_model(ModelSpec(name="cifar_resnet_20"), (3, 32, 32), 10, seed=0)
    assert torch.equal(m.fc.weight, again.fc.weight)  # seeded
    assert not torch.equal(
        m.fc.weight, build_model(ModelSpec(name="cifar_resnet_20"), (3, 32, 32), 10, seed=1).fc.weight
    )


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(SpecError, match="'resnet9000' is no registered model; they are .*cifar_resnet_20"):
        build_model(ModelSpec(name="resnet9000"), (3, 32, 32), 10)
    assert set(MODELS) >= {"mlp", "lenet_300_100", "cifar_resnet_20", "cifar_vgg_16", "resnet50"}
