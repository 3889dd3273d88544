"""Progress: rich bars on a terminal; periodic plain lines otherwise (a `ray job logs` stream, CI, a
file), so a job that runs for hours on a cluster is never silent.

Plain lines come at most every ``$RAYSWEEP_LOG_INTERVAL`` seconds (default 30) per replicate or
sweep, plus one when a replicate or the sweep finishes.
"""
from __future__ import annotations

import os
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from raysweep.spec import Job

console = Console(stderr=True)


def log_interval() -> float:
    try:
        return max(0.0, float(os.environ.get("RAYSWEEP_LOG_INTERVAL", "30")))
    except ValueError:
        return 30.0


def say(msg: str) -> None:
    """One plain line on stderr (no markup), readable in any log."""
    console.print(msg, markup=False, highlight=False, soft_wrap=True)


def warn(msg: str) -> None:
    """A warning the user must see (on stderr, whatever logging is set to)."""
    console.print(f"[bold yellow]warning:[/] {msg}", highlight=False, markup=True, soft_wrap=True)


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), console=console, disable=not enabled, transient=False)


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


class _Bars:
    """Shared: a rich bar on a terminal, plain lines elsewhere, nothing when disabled."""

    def __init__(self, enabled: bool, plain: bool | None = None):
        self.enabled = enabled
        self.plain = enabled and (not console.is_terminal if plain is None else plain)
        self.bar = _progress(enabled and not self.plain)
        self.interval = log_interval()
        self.t0 = time.monotonic()

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()


class CountProgress(_Bars):
    """One bar (or periodic plain lines) of `what` done out of a total: `update(done, total)`."""

    def __init__(self, what: str, enabled: bool = True, plain: bool | None = None):
        super().__init__(enabled, plain)
        self.what, self.last_line = what, -1e9
        self.task = self.bar.add_task(what, total=None, info="")

    def update(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=total)
        now = time.monotonic()
        if self.plain and (now - self.last_line >= self.interval or done == total):
            self.last_line = now
            say(f"{self.what}: {done}/{total} ({done / max(total, 1):.0%})")


class TrainProgress(_Bars):
    """One bar (or line) per training task (work/tasks.py), in training steps; updated from Tune results."""

    def __init__(self, job: Job, tasks: list, enabled: bool = True, plain: bool | None = None):
        super().__init__(enabled, plain)
        self.labels = {t.key: f"train {t.label}" for t in tasks}
        self.tasks = {t.key: self.bar.add_task(self.labels[t.key], total=None, info="") for t in tasks}
        self.last_line = {t.key: -1e9 for t in tasks}
        self.first: dict = {}  # task key -> (time, step) of its first result: the rate behind the ETA

    def update(self, result: dict) -> None:
        k = (result.get("config") or {}).get("task")  # the trial's task key (Tune's config)
        if k not in self.tasks and "replicate" in result:
            k = f"replicate/{result['replicate']}"
        if k not in self.tasks:
            return
        info = ", ".join(part for part in (
            f"test err {result['test_error']:.3f}" if "test_error" in result else "",
            f"loss along the curve {result['curve_loss']:.4f}" if "curve_loss" in result else "",
            f"{result['tokens_per_s']:,.0f} tokens/s" if "tokens_per_s" in result else
            f"{result['images_per_s']:,.0f} img/s" if "images_per_s" in result else "",
            f"data wait {result['data_wait']:.0%}" if "data_wait" in result else "") if part)
        step, total = result.get("step", 0), result.get("total")
        self.bar.update(self.tasks[k], completed=step, total=total, info=info)
        now = time.monotonic()
        t0, s0 = self.first.setdefault(k, (now, step))
        if self.plain and (now - self.last_line[k] >= self.interval or step == total):
            self.last_line[k] = now
            loss = f", test loss {result['test_loss']:.4f}" if "test_loss" in result else ""
            pct = f" ({step / total:.0%})" if total else ""
            eta = f", eta {_eta((total - step) * (now - t0) / (step - s0))}" if total and step > s0 and now > t0 else ""
            say(f"{self.labels[k]}: step {step}/{total}{pct}{', ' + info if info else ''}{loss}{eta}")


class SweepProgress(_Bars):
    """Work items (pair × α-chunk) done out of the whole plan; failures counted; rate and ETA.

    The clock of the rate starts at the first result, not at the start: the actors' start-up (seconds
    to a minute: Ray Data, the dataset on the device) is no part of the per-item rate, and counted
    in it made the first ETAs read minutes for sweeps that take seconds."""

    def __init__(self, total: int, done: int, enabled: bool = True, plain: bool | None = None):
        super().__init__(enabled, plain)
        self.failed = 0
        self.total, self.done, self.start_done = total, done, done
        self.last_line = -1e9
        self.first: float | None = None  # when the first result came
        self.task = self.bar.add_task("sweep items", total=total, completed=done, info="", start=False)
        if self.plain:
            say(f"sweep: {done}/{total} work items already stored; {total - done} to evaluate")

    def update(self, result: dict) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
            self.bar.start_task(self.task)
        self.failed += result.get("status") != "ok"
        self.done += 1
        self.bar.update(self.task, advance=1, info=f"{self.failed} failed" if self.failed else "")
        if self.plain and (now - self.last_line >= self.interval or self.done >= self.total):
            self.last_line = now
            since = self.done - self.start_done - 1  # items finished after the first one, over the time since it
            rate = since / (now - self.first) if since > 0 and now > self.first else 0.0
            speed = f"{rate * 60:.1f} items/min, eta {_eta((self.total - self.done) / rate)}" if rate > 0 else \
                "starting (the rate comes with the second result)"
            failed = f", {self.failed} failed" if self.failed else ""
            say(f"sweep: {self.done}/{self.total} work items ({self.done / max(self.total, 1):.0%}), {speed}{failed}")
