"""Test doubles and data makers shared by the tests and the benchmarks (never imported by the pipeline itself): a
fake LLM server on loopback that injects faults, a real one (vLLM in its own venv) with a tiny model taught a few
answers, tiny tokenizers and models built locally, synthetic annotations with a known truth, a free loopback port,
and the owner's view of an Argilla dataset."""
