"""Test-only plugin: kills a ``train-student`` run at a chosen step, as a SIGKILL would (exit status 137),
or interrupts it there, as Ctrl-C (or SIGTERM) would.

    MENTORNET_KILL_AT_STEP=50 python cli.py --plugin tests/fault_injection.py train-student ...
    MENTORNET_INTERRUPT_AT_STEP=50 python cli.py --plugin tests/fault_injection.py train-student ...

The kill comes from a training callback (:mod:`student_training.callbacks`), so the training loop itself
knows nothing of it.
"""

import os

from student_training.callbacks import Callback, register_callback

KILL_VARIABLE = "MENTORNET_KILL_AT_STEP"
INTERRUPT_VARIABLE = "MENTORNET_INTERRUPT_AT_STEP"
PLUGIN = os.path.abspath(__file__)


class KillAtStep(Callback):
    name = "kill_at_step"

    def __init__(self, step: int):
        self.step = step

    def on_step(self, run, step):
        if step == self.step:
            os._exit(137)


@register_callback
def _kill_if_asked(run):
    value = os.environ.get(KILL_VARIABLE)
    return KillAtStep(int(value)) if value is not None else None


class InterruptAtStep(Callback):
    name = "interrupt_at_step"

    def __init__(self, step: int):
        self.step = step

    def on_step(self, run, step):
        if step == self.step:
            raise KeyboardInterrupt


@register_callback
def _interrupt_if_asked(run):
    value = os.environ.get(INTERRUPT_VARIABLE)
    return InterruptAtStep(int(value)) if value is not None else None
