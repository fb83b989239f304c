"""The inference engine's pinned requirements (requirements.lock): vLLM's CPU build for the tests and benchmarks,
installed into a virtualenv of its own by llm_feedback.testing.engine_server. Package data only; nothing to import."""
