"""Start benchmark children, interleave configurations across repeats, and summarise timings with their spread."""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence

from .child import TASKS
from .measuring import MARK, REPO


class ChildError(RuntimeError):
    """A benchmark child failed; the message holds its task and the end of its output."""


def run_child(task: str, arguments: dict, env: dict | None = None, timeout: float = 3600) -> dict:
    """Run one measurement in a process of its own and return its result.

    The process is forked from this one, which has imported torch and MONAI but computed nothing (no
    thread pool, no allocator history), so it starts in 0.1 s instead of the 5 s an interpreter needs to
    import MONAI. With ``env`` (an allocator to preload, a tunable read at start-up) a new interpreter is
    executed instead.
    """
    if not env:
        return _forked(task, arguments, timeout)
    command = [sys.executable, "-m", "brats_grading.benchmark.child", task, json.dumps(arguments)]
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), environment.get("PYTHONPATH")]))
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARK)]
    if result.returncode != 0 or not lines:
        raise ChildError(f"{task} {arguments} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK) :])


def last_line(text: str) -> str:
    """The last non-empty line of a log or traceback: the exception itself, to lead a long error message."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def _run_in_fork(task: str, arguments: dict, connection) -> None:
    silent = os.open(os.devnull, os.O_WRONLY)  # the runs' logs would interleave with the tables
    os.dup2(silent, 1)
    os.dup2(silent, 2)
    try:
        connection.send(("ok", TASKS[task](**arguments)))
    except BaseException:  # the parent raises it with the child's traceback
        connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()


def _forked(task: str, arguments: dict, timeout: float) -> dict:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_run_in_fork, args=(task, arguments, sender))
    process.start()
    sender.close()
    if not receiver.poll(timeout):
        process.kill()
        raise ChildError(f"{task} {arguments} took more than {timeout} s")
    try:
        status, payload = receiver.recv()
    except EOFError:  # the child died without an answer (killed, out of memory)
        status, payload = "error", "the child process ended without a result"
    process.join()
    if status != "ok":
        raise ChildError(f"{task} failed: {last_line(payload)}\n{arguments}\n{payload[-3000:]}")
    return payload


def interleaved(configs: Sequence, measure: Callable, repeats: int) -> list[list]:
    """``measure(config)`` for every config, ``repeats`` rounds, the order reversed every other round (A B, B A...).

    Returns one list of results per config. Interleaving spreads slow phases of a shared machine over
    every configuration instead of one.
    """
    results: list[list] = [[] for _ in configs]
    for round_number in range(repeats):
        order = list(range(len(configs)))
        if round_number % 2:
            order.reverse()
        for index in order:
            results[index].append(measure(configs[index]))
    return results


def spread(values: Sequence[float]) -> dict:
    """Median, min and max: the noise of a shared machine is visible instead of averaged away."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


class LoadMonitor:
    """Sample the 1-minute load average every ``interval`` seconds while a benchmark runs."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.interval)

    def __enter__(self) -> LoadMonitor:
        self.start = time.time()
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.time() - self.start

    def summary(self) -> dict:
        return {**spread(self.samples or [os.getloadavg()[0]]), "seconds": round(self.seconds, 1)}
