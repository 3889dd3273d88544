"""Multiple-choice tasks scored by log-likelihood (data/tasks.py): the Evaluator's rows against a plain loop over
each example's choices with the Hugging Face model, and the task files' checks."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from test_lm import gpt2  # noqa: E402

from raysweep.data.tasks import pydoc_cloze, read_task  # noqa: E402
from raysweep.errors import SpecError  # noqa: E402
from raysweep.spec import parse_job  # noqa: E402

SEQ = 32
EXAMPLES = [{"context": "def f(x):\n    return", "choices": [" x + 1", " import os", "!!"], "label": 0},
            {"context": "for i in", "choices": [" range(10):", " 42", " else"], "label": 0},
            {"context": "x" * 60, "choices": ["yyyy", "xxxx", "zz"], "label": 1}]  # a context cut from the left


def _plain(model, examples, seq):
    """Each choice scored alone: the byte tokens of context + choice, the last seq + 1 kept, the choice's summed
    log-probability; the answer the highest (the first of equal ones)."""
    right_nll = right_tokens = wrong = 0
    with torch.no_grad():
        for ex in examples:
            scores = []
            for choice in ex["choices"]:
                ctx, ch = list(ex["context"].encode()), list(choice.encode())
                seq_tokens = (ctx + ch)[-(seq + 1):]
                logits = model(input_ids=torch.tensor([seq_tokens[:-1]])).logits[0]
                logp = F.log_softmax(logits.double(), -1)
                positions = range(len(seq_tokens) - 1 - len(ch), len(seq_tokens) - 1)
                scores.append(sum(logp[p, seq_tokens[p + 1]].item() for p in positions))
            best = max(range(len(scores)), key=lambda j: (scores[j], -j))
            wrong += best != ex["label"]
            right_nll -= scores[ex["label"]]
            right_tokens += len(ex["choices"][ex["label"]].encode())
    n = len(examples)
    return right_nll / right_tokens, wrong / n, math.sqrt((wrong / n) * (1 - wrong / n) / (n - 1))


def _job(tmp_path, tasks):
    return parse_job({"name": "mc", "data": {"name": "pydoc", "seq_len": SEQ, "tasks": tasks},
                      "model": {"name": "causal_lm", "config": {"model_type": "gpt2", "n_embd": 32, "n_layer": 2,
                                                                "n_head": 2}},
                      "sweeps": [{"name": "s", "kind": "final_to_final", "splits": ["test", "mine", "pydoc_cloze"]}]})


def test_the_evaluators_task_rows_equal_a_plain_loop_over_the_choices(tmp_path):
    from raysweep.evaluate.evaluator import Evaluator
    from raysweep.io.store import Store

    file = tmp_path / "mine.jsonl"
    file.write_text("\n".join(json.dumps(e) for e in EXAMPLES) + "\n")
    job = _job(tmp_path, ["pydoc_cloze", str(file)])
    ev = Evaluator(job, Store(str(tmp_path / "s")), device="cpu")
    model = gpt2(3)
    ev.set_weights([model.state_dict()[n] for n in ev.names])
    rows = {r["split"]: r for r in ev.evaluate(("test", "mine", "pydoc_cloze"))}
    for split, examples in (("mine", EXAMPLES), ("pydoc_cloze", pydoc_cloze())):
        loss, err, se = _plain(model, examples, SEQ)
        assert rows[split]["loss"] == pytest.approx(loss, rel=1e-6)
        assert rows[split]["error"] == pytest.approx(err, abs=1e-12)
        assert rows[split]["error_se"] == pytest.approx(se, rel=1e-9)
        assert rows[split]["perplexity"] == pytest.approx(math.exp(loss), rel=1e-6)
        assert ev.examples(split) == len(examples)
    assert math.isnan(rows["test"]["error_se"])  # tokens of running text are no independent questions
    assert 0 < rows["pydoc_cloze"]["error"] < 1


def test_pydoc_cloze_is_fixed_and_well_formed():
    a, b = pydoc_cloze(), pydoc_cloze()
    assert a == b and len(a) == 200
    for ex in a:
        assert len(ex["choices"]) == 4 and len(set(ex["choices"])) == 4 and len(ex["context"]) == 48
    assert {ex["label"] for ex in a} == {0, 1, 2, 3}


@pytest.mark.parametrize("lines, says", [
    (['{"context": "a", "choices": ["b"], "label": 0}'], "two or more"),
    (['{"context": "a", "choices": ["b", "c"], "label": 2}'], "label among them"),
    (['{"context": "a", "choices": ["b", "c"]}'], "is not a JSON object"),
    (['{"context": "a", "choices": ["b", "c"], "label": 0}',
      '{"context": "a", "choices": ["b", "c", "d"], "label": 0}'], "same number of choices"),
    (['{"context": "", "choices": ["b", "c"], "label": 0}'], "needs a context"),
])
def test_a_task_file_that_makes_no_sense_says_what_and_where(tmp_path, lines, says):
    file = tmp_path / "t.jsonl"
    file.write_text("\n".join(lines))
    with pytest.raises(SpecError, match=says):
        read_task(str(file))


def test_task_names_are_checked_with_the_job():
    base = {"name": "mc", "model": {"name": "causal_lm"}}
    with pytest.raises(SpecError, match="neither a built-in task"):
        parse_job({**base, "data": {"name": "pydoc", "tasks": ["hellaswag"]}})
    with pytest.raises(SpecError, match="read by the text datasets"):
        parse_job({**base, "data": {"name": "digits", "tasks": ["pydoc_cloze"]}})
    with pytest.raises(SpecError, match="plain split name"):
        parse_job({**base, "data": {"name": "pydoc", "tasks": ["sets/test.jsonl"]}})


def test_a_task_files_content_is_in_its_sweeps_hash_not_the_jobs(tmp_path):
    """A changed task file is new rows for the sweeps that name it; the trained weights (the job's hash) are kept."""
    from raysweep.jobs import load_job
    from raysweep.spec import sweep_hash

    (tmp_path / "mine.jsonl").write_text(json.dumps(EXAMPLES[0]) + "\n")
    text = """name = "mc"
[data]
name = "pydoc"
tasks = ["mine.jsonl"]
[model]
name = "causal_lm"
[[sweeps]]
name = "with"
kind = "final_to_final"
splits = ["test", "mine"]
[[sweeps]]
name = "without"
kind = "final_to_final"
"""
    (tmp_path / "job.toml").write_text(text)
    first = load_job(str(tmp_path / "job.toml"))
    assert first.data.tasks == (str(tmp_path / "mine.jsonl"),)  # beside the job file, made absolute
    (tmp_path / "mine.jsonl").write_text(json.dumps(EXAMPLES[1]) + "\n")
    second = load_job(str(tmp_path / "job.toml"))
    assert first.hash == second.hash
    assert sweep_hash(first.sweep("with")) != sweep_hash(second.sweep("with"))
    assert sweep_hash(first.sweep("without")) == sweep_hash(second.sweep("without"))
    (tmp_path / "mine.jsonl").unlink()
    with pytest.raises(SpecError, match="is not a file"):
        load_job(str(tmp_path / "job.toml"))
