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
    """Stop training at the first NaN / Inf loss, naming the epoch, the iteration and the last good checkpoint.

    ignite's ``TerminateOnNan`` ends the run as if it had finished; this raises instead, so the process
    exits non-zero and nothing of the broken epoch is saved. The check reads the loss already on the
    host for logging (one scalar per iteration).

    Args:
        last_checkpoint: the run's ``last.pt``.
        output_key: key of the loss in the engine output.
    """

    def __init__(self, last_checkpoint: str, output_key: str = "loss") -> None:
        self.last_checkpoint = last_checkpoint
        self.output_key = output_key

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        output = engine.state.output
        loss = output.get(self.output_key) if isinstance(output, dict) else None
        if loss is None:
            return
        value = float(loss.detach().float().mean()) if torch.is_tensor(loss) else float(loss)
        if math.isfinite(value):
            return
        state = engine.state
        local = (state.iteration - 1) % state.epoch_length + 1 if state.epoch_length else state.iteration
        raise NonFiniteLossError(
            f"training loss is {value} at epoch {state.epoch}, iteration {local} of {state.epoch_length} "
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
