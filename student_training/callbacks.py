"""What happens at a step or epoch boundary of a StudentNet run, as objects the loop calls.

The training loop (:func:`student_training.trainer.train`) knows batches, losses, weights and the
optimiser; everything else that happens at a boundary (data-driven dumps, MentorNet re-fits, the run
folder's files, progress display, and faults injected by tests) is a :class:`Callback` registered on
the run. A callback keeps its own state: :meth:`Callback.state_dict` is saved in ``last.pt`` under the
callback's ``name`` and handed back to :meth:`Callback.load_state_dict` on ``--resume``, so a killed run
continues exactly.

The loop calls :meth:`Callback.on_step` only on callbacks that override it, so a run without step
callbacks pays nothing per step.

Plugins add callbacks to every ``train-student`` run of a process with :func:`register_callback`
(``python cli.py --plugin my_callbacks.py train-student ...``)::

    from student_training.callbacks import Callback, register_callback

    class PrintLoss(Callback):
        name = "print_loss"
        def on_epoch_end(self, run, epoch, row):
            print(epoch, row["loss"])

    register_callback(lambda run: PrintLoss())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Run


class Callback:
    """Base class: override the hooks you need. ``name`` keys the callback's state in ``last.pt``."""

    name: str = "callback"

    def on_train_start(self, run: "Run") -> None:
        """Before the first step of this process (also after a resume)."""

    def on_step(self, run: "Run", step: int) -> None:
        """Before the optimiser step ``step`` (global, from 0) is taken."""

    def on_epoch_end(self, run: "Run", epoch: int, row: dict) -> None:
        """After epoch ``epoch`` (from 0) was evaluated; ``row`` is its ``metrics.csv`` row."""

    def on_train_end(self, run: "Run") -> None:
        """After the last epoch."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned; the default accepts an empty state only."""
        if state:
            raise ValueError(f"callback {self.name!r} keeps no state, got {sorted(state)}")


CallbackFactory = Callable[["Run"], "Callback | None"]
_FACTORIES: list[CallbackFactory] = []


def register_callback(factory: CallbackFactory) -> CallbackFactory:
    """Add ``factory(run) -> Callback | None`` to every run this process trains (e.g. from a plugin)."""
    if not callable(factory):
        raise TypeError(f"a callback factory must be callable, got {type(factory).__name__}")
    _FACTORIES.append(factory)
    return factory


def registered_callbacks(run: "Run") -> list[Callback]:
    """The callbacks the registered factories make for ``run``."""
    made = (factory(run) for factory in _FACTORIES)
    return [callback for callback in made if callback is not None]


def step_callbacks(callbacks: list[Callback]) -> list[Callback]:
    """The callbacks that override :meth:`Callback.on_step` (the loop calls no others per step)."""
    return [callback for callback in callbacks if type(callback).on_step is not Callback.on_step]


def check_names(callbacks: list[Callback]) -> None:
    names = [callback.name for callback in callbacks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"two callbacks share the name {duplicates[0]!r}; each needs its own name")


__all__ = ["Callback", "CallbackFactory", "check_names", "register_callback", "registered_callbacks", "step_callbacks"]
