"""The ``loopcall`` command line: ``main.py`` builds the parser from one module per command.

``run``, ``demo``, ``bench`` (``bench.py``, ``bench_display.py``, ``bench_remote.py``),
``agent``, ``serve``, ``keys``, ``show``, ``runs``, ``twilio_emulator``; ``common.py``
and ``summary.py`` are what they share, ``processes.py`` starts loopcall's own
servers as children, ``client.py`` talks to a controller.
"""
