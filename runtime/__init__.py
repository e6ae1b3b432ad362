"""Primitives every layer shares that are not audio: owned background tasks, and
user regexes run with a deadline.

Nothing here knows about calls, cases or runs; ``telephony``, ``personas``,
``refagent`` and ``harness`` all build on it, and it imports none of them.
"""
