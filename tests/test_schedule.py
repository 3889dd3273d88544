import math

import pytest

from raysweep.spec import TrainSpec
from raysweep.train.schedule import checkpoint_steps, every_epoch, frankle, iterations_per_epoch


@pytest.mark.parametrize("n, b, epochs, total, count", [
    (60_000, 128, 40, 18_760, 30),        # LeNet-300-100
    (50_000, 128, 160, 62_560, 74),       # ResNet-20 / VGG-16
    (1_281_167, 1024, 90, 112_680, 124),  # ResNet-50
])
def test_frankle_schedule_sizes(n, b, epochs, total, count):
    assert iterations_per_epoch(n, b) * epochs == total
    steps = frankle(total)
    assert len(steps) == 12 + (total - 1) // 1000 == count
    assert steps[:12] == [0] + [2**k for k in range(11)]
    assert steps[12] == 2000 and steps[-2] == 1000 * ((total - 1) // 1000) and steps[-1] == total


def test_every_epoch_and_list():
    assert every_epoch(10, 4) == [0, 4, 8, 10]
    spec = TrainSpec(epochs=2, batch_size=10, checkpoints="list", steps=(3, 7, 999))
    assert checkpoint_steps(spec, 45) == [0, 3, 7, 10]  # 5 iterations/epoch; 999 is past the end
    assert checkpoint_steps(TrainSpec(epochs=3, batch_size=10, checkpoints="every_epoch"), 45) == [0, 5, 10, 15]


def test_short_runs_keep_only_steps_that_exist():
    assert frankle(100) == [0, 1, 2, 4, 8, 16, 32, 64, 100]
    assert math.ceil(1257 / 32) == iterations_per_epoch(1257, 32) == 40
