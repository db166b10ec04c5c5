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


class FaultAtStep(Callback):
    """At global step ``step``: ``kill`` ends the process as SIGKILL would (exit status 137), ``interrupt``
    raises KeyboardInterrupt as Ctrl-C (or SIGTERM, through cli.main) would."""

    name = "fault_at_step"

    def __init__(self, step: int, fault: str):
        self.step, self.fault = step, fault

    def on_step(self, run, step):
        if step == self.step:
            if self.fault == "kill":
                os._exit(137)
            raise KeyboardInterrupt


@register_callback
def _fault_if_asked(run):
    for variable, fault in ((KILL_VARIABLE, "kill"), (INTERRUPT_VARIABLE, "interrupt")):
        value = os.environ.get(variable)
        if value is not None:
            return FaultAtStep(int(value), fault)
    return None
