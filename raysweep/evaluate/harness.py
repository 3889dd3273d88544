"""EleutherAI's lm-evaluation-harness as an evaluator: a task of `data.tasks = ["lm_eval:<task>"]` is an evaluation
split whose rows lm-eval computes at every point, on the live model — its `HFLM` wraps the model the Evaluator
writes θ(α) into, so nothing is written to disk per point. Tasks come from `data.lm_eval_include` (a folder of
task YAML files whose data is local: `dataset_path: json` with `data_files`) or from lm-eval's catalogue (which
downloads its datasets: a machine with the Hugging Face hub).

A row of such a split: `error` = 1 − the task's accuracy (`acc`, else `exact_match` for generation tasks), its
`error_se` lm-eval's standard error of that metric, `n_examples` the documents evaluated; `loss` and the derived
perplexity columns are NaN (lm-eval reports no token loss). Which metric it was is in the log once per task.
"""
from __future__ import annotations

import logging
import math
import os

from raysweep.errors import SpecError
from raysweep.io.paths import HF_TOKENIZER, HF_TOKENIZER_FILES
from raysweep.lm import model_outputs

log = logging.getLogger("raysweep")
METRICS = ("acc", "exact_match")  # the first a task reports is its row's 1 − error


class Harness:
    """lm-eval around one Evaluator's model: tasks loaded once per include folder, evaluated at each point."""

    def __init__(self, model, tokenizer: str, batch_size: int, device: str):
        try:
            from lm_eval.models.huggingface import HFLM
        except ImportError:
            raise SpecError("data.tasks names lm-evaluation-harness tasks, which needs lm-eval: pip install lm-eval "
                            "(or 'raysweep[lm]')") from None
        self.model = model
        with model_outputs(model):
            self.lm = HFLM(pretrained=model, tokenizer=_tokenizer(tokenizer), batch_size=batch_size, device=device)
        self.managers: dict[str, object] = {}
        self.said: set[str] = set()

    def _manager(self, include: str):
        from lm_eval.tasks import TaskManager

        if include not in self.managers:
            self.managers[include] = TaskManager(include_path=include or None, verbosity="ERROR")
        return self.managers[include]

    def run(self, task: str, include: str) -> tuple[dict, int]:
        """(the task's row at the model's current weights: error, error_se, NaN loss; the documents evaluated)."""
        import lm_eval

        quiet = os.environ.get("TQDM_DISABLE")
        os.environ["TQDM_DISABLE"] = "1"  # lm-eval's progress bars, one set per point, in every actor's log
        try:
            with model_outputs(self.model):
                out = lm_eval.simple_evaluate(model=self.lm, tasks=[task], task_manager=self._manager(include),
                                              log_samples=False, verbosity="ERROR")
        finally:
            if quiet is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = quiet
        if out is None or task not in out.get("results", {}):
            raise SpecError(f"lm-eval gave no results for task {task!r} (a group of tasks? name one task)")
        found = out["results"][task]
        name = next((m for m in METRICS if f"{m},none" in found), None)
        if name is None:
            reported = sorted({k.split(",")[0] for k in found if "," in k and "stderr" not in k})
            raise SpecError(f"lm-eval task {task!r} reports {reported}; raysweep records a task's accuracy (acc) or "
                            f"exact_match as 1 − error: give the task one of those metrics")
        if task not in self.said:
            self.said.add(task)
            log.info("lm-eval task %s: error = 1 - %s", task, name)
        value, se = float(found[f"{name},none"]), found.get(f"{name}_stderr,none")
        n = int(out.get("n-samples", {}).get(task, {}).get("effective", 0))
        se = float(se) if isinstance(se, (int, float)) else math.nan
        return {"loss": math.nan, "error": 1.0 - value, "error_se": se}, n


def _tokenizer(path: str):
    """The Hugging Face tokenizer of data.tokenizer: a model's folder (its tokenizer files), or a tokenizer.json."""
    import transformers

    try:
        if os.path.isdir(path) and any(os.path.exists(os.path.join(path, f)) for f in HF_TOKENIZER_FILES[1:3]):
            return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)  # its config: special ids
        file = os.path.join(path, HF_TOKENIZER) if os.path.isdir(path) else path
        return transformers.PreTrainedTokenizerFast(tokenizer_file=file)
    except (OSError, ValueError) as exc:
        raise SpecError(f"data.tokenizer {path!r} cannot be read as a Hugging Face tokenizer for lm-eval "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); give the model's "
                        f"folder with its tokenizer files") from None
