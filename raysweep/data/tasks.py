"""Multiple-choice tasks for language models, scored by log-likelihood as EleutherAI's lm-evaluation-harness scores
them (its `acc`): each example is a context and K choices; the model's answer is the choice whose tokens, after the
context, have the highest summed log-probability. Each task is an evaluation split named after it — a sweep's
`splits = ["test", "pydoc_cloze"]` — so its rows sit in the points, curves and merges tables beside perplexity:

    loss            the mean token cross-entropy of the correct choices (nats per token), so perplexity and bits
                    per byte are those of the right answers
    error           1 − accuracy: the fraction of examples whose highest-scoring choice is not the correct one
    error_se        the standard error of that fraction, √(e(1 − e)/(n − 1)) over the n examples (lm-eval's)

`data.tasks` names them: "pydoc_cloze" (built in, below) or a .jsonl file, one example per line:
{"context": "...", "choices": ["...", "..."], "label": 0}, every example with the same number of choices.

An example is K windows of data.seq_len tokens, one per choice: context and choice joined, the choice's tokens
the only targets, the context cut from the left when the two do not fit (as lm-eval does); the context and each
choice are tokenized apart, so a choice starts on a token boundary (lm-eval joins, then splits: with a byte
tokenizer the two are the same).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from raysweep.data.types import IGNORE
from raysweep.errors import SpecError
from raysweep.spec import BUILTIN_TASKS

PYDOC_CLOZE = "pydoc_cloze"


def pydoc_cloze(examples: int = 200, context_bytes: int = 48, choice_bytes: int = 16, k: int = 4,
                seed: int = 0) -> list[dict]:
    """Which continuation follows? From pydoc's test documents (every 10th topic: the text no training split
    holds): a context of `context_bytes` characters at a seeded place, the `choice_bytes` that follow it, and K − 1
    passages of that length from elsewhere in the same documents as distractors; the correct one at a seeded
    position among them. Plain ASCII passages only, whitespace collapsed; the same examples on every machine."""
    from pydoc_data.topics import topics

    docs = [" ".join(topics[key].split()) for key in sorted(topics)][9::10]
    docs = [d for d in docs if len(d) > 4 * (context_bytes + choice_bytes) and d.isascii()]
    rng = random.Random(seed)
    out = []
    while len(out) < examples:
        doc = rng.choice(docs)
        at = rng.randrange(0, len(doc) - context_bytes - choice_bytes)
        context, answer = doc[at:at + context_bytes], doc[at + context_bytes:at + context_bytes + choice_bytes]
        others = set()
        while len(others) < k - 1:
            other = rng.choice(docs)
            start = rng.randrange(0, len(other) - choice_bytes)
            passage = other[start:start + choice_bytes]
            if passage != answer:
                others.add(passage)
        choices = sorted(others)
        label = rng.randrange(k)
        choices.insert(label, answer)
        out.append({"context": context, "choices": choices, "label": label})
    return out


def read_task(path: str) -> list[dict]:
    """The examples of a .jsonl task file, checked: a context, K ≥ 2 choices, a label among them; one K."""
    examples, ks = [], set()
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SpecError(f"data.tasks: {path!r} cannot be read ({exc.strerror}); give a .jsonl file of "
                        f"{{\"context\", \"choices\", \"label\"}} lines or a built-in task "
                        f"({list(BUILTIN_TASKS)})") from None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            ex = json.loads(line)
            context, choices, label = str(ex["context"]), [str(c) for c in ex["choices"]], int(ex["label"])
        except (ValueError, KeyError, TypeError):
            raise SpecError(f"{path}:{i + 1} is not a JSON object with \"context\", \"choices\" (a list) and "
                            f"\"label\" (the correct choice's index)") from None
        if not context or len(choices) < 2 or not 0 <= label < len(choices) or any(not c for c in choices):
            raise SpecError(f"{path}:{i + 1}: {len(choices)} choice(s), label {label}; an example needs a context, "
                            f"two or more non-empty choices and a label among them")
        ks.add(len(choices))
        examples.append({"context": context, "choices": choices, "label": label})
    if not examples or len(ks) != 1:
        raise SpecError(f"data.tasks: {path!r} has {len(examples)} example(s) with {sorted(ks)} choices; a task needs "
                        f"examples, every one with the same number of choices")
    return examples


def task_examples(entry: str) -> list[dict]:
    return pydoc_cloze() if entry == PYDOC_CLOZE else read_task(entry)


def task_windows(examples: list[dict], tokenizer, seq_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                           float]:
    """(x, y) windows (N·K, T) — example i's choice j at row i·K + j, only the choice's tokens as targets —, the
    labels (N,), and the UTF-8 bytes per target token of the correct choices."""
    pad = tokenizer.eos if tokenizer.eos is not None else 0
    k = len(examples[0]["choices"])
    x = torch.full((len(examples) * k, seq_len), pad, dtype=torch.long)
    y = torch.full((len(examples) * k, seq_len), IGNORE, dtype=torch.long)
    right_bytes = right_tokens = 0
    for i, ex in enumerate(examples):
        context = tokenizer.encode(ex["context"])
        for j, choice in enumerate(ex["choices"]):
            tokens = tokenizer.encode(choice)
            if not 0 < len(tokens) <= seq_len:
                raise SpecError(f"data.tasks: a choice of {len(tokens)} tokens does not fit data.seq_len = {seq_len} "
                                f"(with one token of context before it); raise seq_len or shorten the choices")
            seq = (context + tokens)[-(seq_len + 1):]
            inputs, targets = seq[:-1], seq[1:]
            row = i * k + j
            x[row, :len(inputs)] = torch.tensor(inputs)
            y[row, len(targets) - len(tokens):len(targets)] = torch.tensor(tokens)
            if j == ex["label"]:
                right_bytes += len(choice.encode("utf-8"))
                right_tokens += len(tokens)
    labels = torch.tensor([ex["label"] for ex in examples], dtype=torch.long)
    return x, y, labels, right_bytes / max(right_tokens, 1)
