"""Primitives every layer shares: speech edges and the endpointer, G.711, resampling,
offline voices and the transcriber.

Nothing here knows about calls, cases or runs; ``telephony``, ``personas``,
``refagent`` and ``harness`` all build on it, and it imports none of them.
"""
