"""raysweep's multiple-choice scoring against EleutherAI's lm-evaluation-harness (pinned in constraints.txt): the
same model, tokenizer and local task file; lm-eval's HFLM wraps the live model (nothing written per point) and
its `acc` and `acc_stderr` must equal raysweep's 1 − error and error_se."""
import json
import math
import random

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

WORDS = ("the list dict set tuple int str float bool bytes none true false return yield class def import from "
         "while for if else try except raise with as lambda global pass break continue").split()


def _examples(n=40, k=4, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        context = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))
        choices = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))) for _ in range(k)]
        out.append({"context": context, "choices": choices, "label": rng.randrange(k)})
    return out


def _folder(tmp_path):
    """A tiny GPT-2 and a word-level tokenizer (tokenizer.json and the transformers files HFLM reads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[UNK]", "<|endoftext|>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder = tmp_path / "model"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"),
                                                eos_token="<|endoftext|>", unk_token="[UNK]")
    fast.save_pretrained(str(folder))
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=1, eos_token_id=1)
    torch.manual_seed(4)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(str(folder))
    return folder, model, fast


def _task_files(tmp_path, examples) -> tuple:
    """The examples as a .jsonl file, and an lm-eval task YAML reading it (local data: nothing downloaded)."""
    task = tmp_path / "mc.jsonl"
    task.write_text("\n".join(json.dumps(e) for e in examples) + "\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "mc.yaml").write_text(f"""task: raysweep_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {task}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
target_delimiter: " "
metric_list:
  - metric: acc
""")
    return task, tmp_path / "tasks"


def test_multiple_choice_scoring_equals_lm_evals_acc_and_stderr(tmp_path):
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from raysweep.evaluate.evaluator import Evaluator
    from raysweep.io.store import Store
    from raysweep.spec import parse_job

    folder, model, fast = _folder(tmp_path)
    task, tasks = _task_files(tmp_path, _examples())
    results = lm_eval.simple_evaluate(model=HFLM(pretrained=model, tokenizer=fast, batch_size=8, device="cpu"),
                                      tasks=["raysweep_mc"],
                                      task_manager=TaskManager(include_path=str(tasks)))
    theirs = results["results"]["raysweep_mc"]

    job = parse_job({"name": "mc", "data": {"name": "pydoc", "seq_len": 32, "tokenizer": str(folder),
                                            "tasks": [str(task)]},
                     "model": {"name": "causal_lm", "config": {"from": str(folder)}}})
    ev = Evaluator(job, Store(str(tmp_path / "s")), device="cpu")
    ev.set_weights([model.state_dict()[n] for n in ev.names])
    ours = ev.evaluate(("mc",))[0]
    assert 0 < theirs["acc,none"] < 1  # the comparison can fail: neither always right nor always wrong
    assert 1 - ours["error"] == pytest.approx(theirs["acc,none"], abs=1e-12)
    assert ours["error_se"] == pytest.approx(theirs["acc_stderr,none"], rel=1e-9)


def test_lm_eval_tasks_along_a_line_through_raysweep_run(tmp_path):
    """`data.tasks = ["lm_eval:raysweep_mc", "mc.jsonl"]`: the same questions run by lm-eval on the live model
    in two actors and scored by raysweep itself; at every α both equal lm-eval's own simple_evaluate on the
    interpolated transformers model, written out in the test."""
    import polars as pl
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from test_lm import _cli

    import raysweep

    folder, model_a, fast = _folder(tmp_path)
    torch.manual_seed(11)
    model_b = transformers.GPT2LMHeadModel(model_a.config).eval()
    model_b.save_pretrained(str(tmp_path / "b"))
    task, tasks = _task_files(tmp_path, _examples(n=30, seed=2))
    job = tmp_path / "harness.toml"
    job.write_text(f"""
name = "harness_line"
replicates = 2
external = [["{folder}"], ["{tmp_path / 'b'}"]]
[data]
name = "pydoc"
seq_len = 32
tokenizer = "{folder}"
tasks = ["lm_eval:raysweep_mc", "{task}"]
lm_eval_include = "{tasks}"
[model]
name = "causal_lm"
[model.config]
from = "{folder}"
[[sweeps]]
name = "line"
kind = "final_to_final"
alpha = {{ values = [0.0, 0.5, 1.0] }}
splits = ["raysweep_mc", "mc"]
""")
    done = _cli(["run", str(job), "--storage", str(tmp_path / "out"), "--set", "resources.eval_actors=2"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    points = raysweep.open(str(job), storage=str(tmp_path / "out")).points.collect()
    a, b = model_a.state_dict(), model_b.state_dict()
    plain = transformers.GPT2LMHeadModel(model_a.config).eval()
    manager = TaskManager(include_path=str(tasks))
    accs = []
    for alpha in (0.0, 0.5, 1.0):
        plain.load_state_dict({k: (1 - alpha) * a[k] + alpha * b[k] for k in a})
        theirs = lm_eval.simple_evaluate(model=HFLM(pretrained=plain, tokenizer=fast, batch_size=8, device="cpu"),
                                         tasks=["raysweep_mc"], task_manager=manager)["results"]["raysweep_mc"]
        accs.append(theirs["acc,none"])
        at = points.filter(pl.col("alpha") == alpha)
        for split in ("raysweep_mc", "mc"):
            row = at.filter(pl.col("split") == split).to_dicts()[0]
            assert row["error"] == pytest.approx(1 - theirs["acc,none"], abs=1e-12), (alpha, split)
            assert row["error_se"] == pytest.approx(theirs["acc_stderr,none"], rel=1e-9), (alpha, split)
            assert row["n_examples"] == 30
        assert math.isnan(at.filter(pl.col("split") == "raysweep_mc")["loss"][0])  # lm-eval reports no token loss
    assert len(set(accs)) > 1  # the line moves: a check that a constant row could not pass
