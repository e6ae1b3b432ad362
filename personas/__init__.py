"""Who calls: the caller bot (a pipecat pipeline), its brains, voices and persona library."""
