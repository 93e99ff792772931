"""What a training run does when it goes wrong: a non-finite loss fails loudly, Ctrl-C or SIGTERM stops cleanly.

Both name the last complete checkpoint (``last.pt``, written atomically at each epoch end), which
``resume: true`` continues from; neither writes a checkpoint of a half-done epoch.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from ..fault_injection import pause_point

__all__ = ["InterruptHandler", "NonFiniteLossError", "NonFiniteLossHandler"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def _last_checkpoint(checkpoint: str | Path) -> str:
    path = Path(checkpoint)
    return f"{path} (resume with --resume True)" if path.is_file() else "none yet (no epoch completed)"


class NonFiniteLossHandler:
    """Stop training at a NaN / Inf loss, naming the epoch, the iterations and the last good checkpoint.

    ignite's ``TerminateOnNan`` ends the run as if it had finished; this raises instead, so the process
    exits non-zero and nothing of the broken epoch is saved. Reading the loss on the host every iteration
    would make a GPU wait for it, so the losses are summed on the device and the sum is read every
    ``check_every`` iterations (the log interval) and at the last iteration of each epoch, before any
    end-of-epoch handler saves a checkpoint. With ``check_every`` 1 the message names the exact iteration.

    Args:
        last_checkpoint: the run's ``last.pt``.
        output_key: key of the loss in the engine output.
        check_every: iterations between host reads of the summed loss.
    """

    def __init__(self, last_checkpoint: str, output_key: str = "loss", check_every: int = 1) -> None:
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.last_checkpoint = last_checkpoint
        self.output_key = output_key
        self.check_every = int(check_every)
        self._window_sum: torch.Tensor | float = 0.0
        self._window_start = 1

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _loss(self, output):
        """The batch loss: MONAI's engines decollate their output into per-case dicts that all hold it."""
        if isinstance(output, (list, tuple)) and output and isinstance(output[0], dict):
            output = output[0]
        return output.get(self.output_key) if isinstance(output, dict) else None

    def __call__(self, engine: Engine) -> None:
        loss = self._loss(engine.state.output)
        if loss is None:
            return
        state = engine.state
        local = (state.iteration - 1) % state.epoch_length + 1 if state.epoch_length else state.iteration
        if local == 1:
            self._window_sum, self._window_start = 0.0, 1
        loss = loss.detach().float().sum() if torch.is_tensor(loss) else float(loss)
        self._window_sum = self._window_sum + loss  # stays on the device: no host sync here
        if local % self.check_every and local != state.epoch_length:
            return
        value, first = float(self._window_sum), self._window_start
        self._window_sum, self._window_start = 0.0, local + 1
        if math.isfinite(value):
            return
        where = f"iteration {local}" if first == local else f"iterations {first}-{local}"
        raise NonFiniteLossError(
            f"training loss is {value} at epoch {state.epoch}, {where} of {state.epoch_length} "
            f"(global iteration {state.iteration}); last good checkpoint: {_last_checkpoint(self.last_checkpoint)}. "
            "Lower learning_rate or grad_clip, or check the data with scripts/check_data.py"
        )


class InterruptHandler:
    """Ctrl-C or SIGTERM stops training at the next iteration boundary: no traceback, the last complete
    checkpoint named, exit status 128 + the signal (130 for SIGINT, 143 for SIGTERM, as shells report).

    The signal only sets a flag; the run acts on it where it is safe to stop: before and after each
    iteration, at epoch start and end (before validation and checkpointing) and at the end of the run. So a
    signal never lands inside ``torch.save`` or a handler, and a signal sent while an iteration runs is
    always acted on before the next one. A second Ctrl-C raises ``KeyboardInterrupt`` at once (for a run
    stuck in a data loader); it is caught here too. The epoch in progress is not saved: resuming replays it
    from ``last.pt``, which keeps a resumed run identical to an uninterrupted one. When the run ends, the
    signal handlers it replaced are put back (a notebook or server that trains keeps its own).

    Args:
        last_checkpoint: the run's ``last.pt``.
        signals: the signals handled; others keep their handlers.
    """

    def __init__(self, last_checkpoint: str, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.last_checkpoint = last_checkpoint
        self.signals = tuple(signals)
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._install)
        engine.add_event_handler(Events.ITERATION_STARTED, self._before_iteration)
        for event in (Events.ITERATION_COMPLETED, Events.EPOCH_STARTED):
            engine.add_event_handler(event, self.stop_if_requested)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.stop_if_requested)
        engine.add_event_handler(Events.COMPLETED, self._complete)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self)

    def _install(self, _engine: Engine) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for number in self.signals:
            self._previous[number] = signal.signal(number, self._on_signal)

    def _restore(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()

    def _on_signal(self, number: int, _frame) -> None:
        """Only a flag (logging here could re-enter a handler the main thread is in)."""
        if self.received == signal.SIGINT and number == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, wherever the run is
        if self.received is None:
            self.received = number

    def _before_iteration(self, engine: Engine) -> None:
        completed = engine.state.iteration - 1  # ignite counts the iteration before it starts
        pause_point("iteration", completed, until=self.stop_requested)  # a test's signal lands here
        self.stop_if_requested(engine, completed)

    def stop_requested(self) -> bool:
        return self.received is not None

    def stop_if_requested(self, engine: Engine, completed: int | None = None) -> None:
        """Exit when a signal came; ``completed``: the iterations done (the engine's count by default)."""
        if self.received is not None:
            done = engine.state.iteration if completed is None else completed
            self._exit(self.received, f"in epoch {engine.state.epoch} after iteration {done}")

    def _complete(self, engine: Engine) -> None:
        try:
            self.stop_if_requested(engine)
        finally:
            self._restore()

    def _exit(self, number: int, where: str) -> None:
        """Raise the stop; inside the engine, ignite logs it and hands it to :meth:`__call__`, which says why."""
        message = (
            f"{signal.Signals(number).name}: interrupted {where}; "
            f"last complete checkpoint: {_last_checkpoint(self.last_checkpoint)}"
        )
        raise _Stop(128 + int(number), message)

    def __call__(self, engine: Engine, error: BaseException) -> None:
        """Last, after ignite's own log line: the message, then exit; other errors go on unchanged."""
        self._restore()
        if isinstance(error, KeyboardInterrupt):
            state = engine.state
            error = _Stop(
                128 + signal.SIGINT,
                f"SIGINT: interrupted in epoch {state.epoch} at iteration "
                f"{state.iteration}; last complete checkpoint: {_last_checkpoint(self.last_checkpoint)}",
            )
        if not isinstance(error, _Stop):
            raise error
        _say(error.message)
        raise SystemExit(error.code) from None


class _Stop(SystemExit):
    """The clean stop of :class:`InterruptHandler`: exit status and the message that says where."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code)
        self.message = message


def _say(message: str) -> None:
    logger.warning(message)
    print(message, file=sys.stderr, flush=True)
