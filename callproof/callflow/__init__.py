"""The compliance flow, once, for every transport.

* :mod:`.flow` -- :class:`CallFlow`: consent → protocol → read aloud → SMS → record → hand-off.
* :mod:`.port` -- :class:`CallPort`, what the flow asks of a channel; the exceptions it tells apart.
* :mod:`.reasons` -- the CALLPROOF_STATUS / CALLPROOF_REASON values the dialplan routes on.
* :mod:`.endings` -- caller left, failed, finalised; call-backs for dropped calls.
* :mod:`.decisions` -- language, SMS, recording file name, retention class (pure).
* :mod:`.recording_files` -- measuring a finished recording and finalising its row.

The ARI application (``ari_app/call_port.py``) and the AGI script / FastAGI server
(``agi_scripts/call_port.py``) are adapters: they translate the port, nothing more.
"""

from .flow import CallFlow, FlowDeps, Step
from .port import CallerHungUp, CallerId, CallFacts, CallPort, PlaybackFailed, RecordingError
from .reasons import DialplanStatus, Reason, StepFailed
from .timings import CallTimings

__all__ = ["CallFacts", "CallFlow", "CallPort", "CallTimings", "CallerHungUp", "CallerId", "DialplanStatus",
           "FlowDeps", "PlaybackFailed", "Reason", "RecordingError", "Step", "StepFailed"]
