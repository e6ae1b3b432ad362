"""What the agent under test tells loopcall during its run, gathered per run.

Stage: beside the call (controller or CLI -> orchestrator -> call; the agent ->
these routes -> the run's inbox -> the Run before scoring).  ``Inboxes`` is the
registry of open runs (``inbox.py``); ``routes.router`` serves the mock tools at
each run's tools URL and takes its event webhook (``routes.py``); ``lay_into``
puts what an inbox collected on the run's timeline (``timeline.py``);
``serve_ingest`` is the loopback server ``loopcall run`` starts (``server.py``).
``otel``: OTLP/HTTP traces at ``/v1/traces`` (its own ``TraceDesk`` joins spans to runs).
"""

from harness.ingest.inbox import Inboxes, RunInbox
from harness.ingest.routes import EventReport, events_url, router, tools_url
from harness.ingest.server import IngestServer, ingest_app, serve_ingest
from harness.ingest.timeline import lay_into, turn_of

__all__ = [
    "EventReport",
    "IngestServer",
    "Inboxes",
    "RunInbox",
    "events_url",
    "ingest_app",
    "lay_into",
    "router",
    "serve_ingest",
    "tools_url",
    "turn_of",
]
