"""`train.freeze`: the parameters kept at their initial values (globs over state-dict names)."""
from __future__ import annotations

import fnmatch

from raysweep.errors import SpecError
from raysweep.spec import Job


def frozen(job: Job, model) -> set[str]:
    """The parameters `train.freeze` names; a glob that matches none is an error naming the parameters."""
    names = [n for n, _ in model.named_parameters()]
    out = set()
    for glob in job.train.freeze:
        hit = fnmatch.filter(names, glob)
        if not hit:
            raise SpecError(f"train.freeze: {glob!r} matches no parameter of the model; its parameters are "
                            f"{names[:20]}{' ...' if len(names) > 20 else ''}")
        out |= set(hit)
    return out
