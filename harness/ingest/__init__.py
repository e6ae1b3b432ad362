"""What reaches loopcall from the agent's side during a run, beside the call's audio.

Stage: beside the call.  In: requests the agent (or its framework) sends while a
run is live.  Out: values the orchestrator joins into the Run at its end.
``otel``: OTLP/HTTP traces at ``/v1/traces``.
"""
