"""The reference agent under test, shipped so the demo and the tests have a real peer.

A pipecat pipeline behind SmallWebRTC's ``POST /api/offer``: it greets, follows a
deterministic script, speaks with an offline voice, hears with offline STT, and
hangs up after its goodbye.  With a reply delay it is a latency oracle: each reply
starts exactly D ms after the caller's last voiced sample reached it.
"""
