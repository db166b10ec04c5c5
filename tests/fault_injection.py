"""Test-only plugin: kills a ``train-student`` run at a chosen step, as a SIGKILL would (exit status 137),
interrupts it there, as Ctrl-C (or SIGTERM) would, or sends it a real SIGHUP, as a closed terminal does.

    MENTORNET_KILL_AT_STEP=50 python cli.py --plugin tests/fault_injection.py train-student ...
    MENTORNET_INTERRUPT_AT_STEP=50 python cli.py --plugin tests/fault_injection.py train-student ...
    MENTORNET_HANGUP_AT_STEP=50 python cli.py --plugin tests/fault_injection.py train-student ...

The kill comes from a training callback (:mod:`student_training.callbacks`), so the training loop itself
knows nothing of it.
"""

import os
import signal

from student_training.callbacks import Callback, register_callback

KILL_VARIABLE = "MENTORNET_KILL_AT_STEP"
INTERRUPT_VARIABLE = "MENTORNET_INTERRUPT_AT_STEP"
HANGUP_VARIABLE = "MENTORNET_HANGUP_AT_STEP"
PLUGIN = os.path.abspath(__file__)


class FaultAtStep(Callback):
    """At global step ``step``: ``kill`` ends the process as SIGKILL would (exit status 137), ``interrupt``
    raises KeyboardInterrupt as Ctrl-C (or SIGTERM, through cli.main) would, ``hangup`` sends the process a
    SIGHUP (what it does is cli.main's handler's business)."""

    name = "fault_at_step"

    def __init__(self, step: int, fault: str):
        self.step, self.fault = step, fault

    def on_step(self, run, step):
        if step == self.step:
            if self.fault == "kill":
                os._exit(137)
            if self.fault == "hangup":
                os.kill(os.getpid(), signal.SIGHUP)
                return
            raise KeyboardInterrupt


@register_callback
def _fault_if_asked(run):
    for variable, fault in ((KILL_VARIABLE, "kill"), (INTERRUPT_VARIABLE, "interrupt"), (HANGUP_VARIABLE, "hangup")):
        value = os.environ.get(variable)
        if value is not None:
            return FaultAtStep(int(value), fault)
    return None
