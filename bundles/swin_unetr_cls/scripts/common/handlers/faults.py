"""What a training run does when it goes wrong: a non-finite loss fails loudly, Ctrl-C stops cleanly.

Both name the last complete checkpoint (``last.pt``, written atomically at each epoch end), which
``resume: true`` continues from; neither writes a checkpoint of a half-done epoch.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import torch
from ignite.engine import Engine, Events

__all__ = ["InterruptHandler", "NonFiniteLossError", "NonFiniteLossHandler"]

logger = logging.getLogger(__name__)

#: exit status of a process stopped by SIGINT (128 + 2), as shells report it
INTERRUPTED_EXIT_STATUS = 130


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
    """On Ctrl-C, stop without a traceback: say where the last complete checkpoint is and exit with status 130.

    ignite hands ``KeyboardInterrupt`` to ``EXCEPTION_RAISED`` handlers; every other exception is raised
    again unchanged. The epoch in progress is not saved: resuming replays it from ``last.pt``, which keeps
    a resumed run identical to an uninterrupted one.

    Args:
        last_checkpoint: the run's ``last.pt``.
    """

    def __init__(self, last_checkpoint: str) -> None:
        self.last_checkpoint = last_checkpoint

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EXCEPTION_RAISED, self)

    def __call__(self, engine: Engine, error: BaseException) -> None:
        if not isinstance(error, KeyboardInterrupt):
            raise error
        message = (
            f"interrupted at epoch {engine.state.epoch}, iteration {engine.state.iteration}; "
            f"last complete checkpoint: {_last_checkpoint(self.last_checkpoint)}"
        )
        logger.warning(message)
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED_EXIT_STATUS)
