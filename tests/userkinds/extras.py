"""A model, a metric and a checkpoint format of your own, registered by name the way the built-ins are (a job names
this module in its plugins, then uses the names): the model `tinynet`, the metric `margin`, and `.npz` checkpoints."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from raysweep.evaluate.losses import register_metric
from raysweep.io.external import read_bytes
from raysweep.models import register_model
from raysweep.train.formats import register_format


@register_model("tinynet")
def tinynet(spec, in_shape, num_classes: int) -> nn.Module:
    """Flatten → Linear(·, hidden[0]) → tanh → Linear(·, classes): the job's model.hidden sets its width."""
    width = spec.hidden[0] if spec.hidden else 16
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(in_shape)), width), nn.Tanh(),
                         nn.Linear(width, num_classes))


@register_metric("margin")
def margin(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The true class's logit minus the largest other one, per example."""
    true = out.gather(1, y[:, None]).squeeze(1)
    other = out.masked_fill(nn.functional.one_hot(y, out.shape[1]).bool(), float("-inf")).max(1).values
    return (true - other).double()


@register_format("npz", lambda uri: uri.endswith(".npz"))
def read_npz(uri: str, data: bytes | None = None) -> dict[str, torch.Tensor]:
    import io

    arrays = np.load(io.BytesIO(read_bytes(uri) if data is None else data))
    return {k: torch.from_numpy(arrays[k]) for k in arrays.files}
