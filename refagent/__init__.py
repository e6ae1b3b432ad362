"""The agents under test that loopcall ships: the reference agent, the latency oracle,
the echo endpoint.

A pipecat pipeline behind SmallWebRTC's ``POST /api/offer`` and a Twilio media
stream at ``/ws`` (``server.py``), its light variant without a pipeline for load
(``light.py``, ``light_ws.py``) and its SIP phone (``sip_line.py``): it greets,
follows a deterministic script, speaks with an offline voice, hears with offline
STT, and hangs up after its goodbye.  With a reply delay it is a latency oracle:
each reply starts exactly D ms after the caller's last voiced sample reached it.
In echo mode it plays the caller back, which the harness's calibration times
(``echo.py``).  It builds only on ``audio`` and ``telephony``: it is a peer of the
harness, not part of it.
"""
