"""raysweep's multiple-choice scoring against EleutherAI's lm-evaluation-harness (pinned in constraints.txt): the
same model, tokenizer and local task file; lm-eval's HFLM wraps the live model (nothing written per point) and
its `acc` and `acc_stderr` must equal raysweep's 1 − error and error_se."""
import json
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


def test_multiple_choice_scoring_equals_lm_evals_acc_and_stderr(tmp_path):
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from raysweep.evaluate.evaluator import Evaluator
    from raysweep.io.store import Store
    from raysweep.spec import parse_job

    folder, model, fast = _folder(tmp_path)
    task = tmp_path / "mc.jsonl"
    task.write_text("\n".join(json.dumps(e) for e in _examples()) + "\n")
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
    results = lm_eval.simple_evaluate(model=HFLM(pretrained=model, tokenizer=fast, batch_size=8, device="cpu"),
                                      tasks=["raysweep_mc"],
                                      task_manager=TaskManager(include_path=str(tmp_path / "tasks")))
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
