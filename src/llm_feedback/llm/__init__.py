"""LLM backends behind one async interface, the runner that drives them, and `batch.ask`: the one request path of
the generate and judge stages."""
