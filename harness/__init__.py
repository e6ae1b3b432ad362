"""loopcall's harness: the controller side of a test call.

It takes cases, places calls through ``telephony``, lets a ``personas`` bot talk,
records both sides, measures latency from the audio, scores, and stores ``Run``s.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
