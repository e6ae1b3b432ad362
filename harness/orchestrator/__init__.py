"""Run one case against one target and return a ``Run``, whatever happens.

Stage: the middle of the flow (controller/CLI -> orchestrator -> call, persona,
recording -> analysis -> scoring -> Run -> store).  ``run_case`` (``execution.py``)
calibrates the transport (``calibration.py``, an echo call), opens the call, lets
the persona talk, hangs up, analyses, scores and stores; ``RunOptions``
(``options.py``) says how.
"""

from harness.orchestrator.calibration import Calibration, EchoCalibrator
from harness.orchestrator.execution import run_case
from harness.orchestrator.options import CALL_OVER, ProgressFn, RunOptions

__all__ = ["CALL_OVER", "Calibration", "EchoCalibrator", "ProgressFn", "RunOptions", "run_case"]
