"""Rich progress bars: training steps per replicate, sweep chunks done/total with an ETA."""
from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from raysweep.spec import Job

console = Console(stderr=True)


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), console=console, disable=not enabled, transient=False)


class TrainProgress:
    """One bar per replicate, in training steps; updated from Tune results."""

    def __init__(self, job: Job, replicates: list[int], enabled: bool = True):
        self.bar = _progress(enabled)
        self.tasks = {k: self.bar.add_task(f"train replicate {k}", total=None, info="") for k in replicates}

    def update(self, result: dict) -> None:
        k = result.get("replicate")
        if k not in self.tasks:
            return
        info = f"test err {result['test_error']:.3f}" if "test_error" in result else ""
        self.bar.update(self.tasks[k], completed=result.get("step", 0), total=result.get("total"), info=info)

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()


class SweepProgress:
    """Work items (pair × α-chunk) done out of the whole plan; failures counted."""

    def __init__(self, total: int, done: int, enabled: bool = True):
        self.bar = _progress(enabled)
        self.failed = 0
        self.task = self.bar.add_task("sweep chunks", total=total, completed=done, info="")

    def update(self, result: dict) -> None:
        self.failed += result.get("status") != "ok"
        self.bar.update(self.task, advance=1, info=f"{self.failed} failed" if self.failed else "")

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()
