"""llm-feedback: compare LLMs on your own tasks with human annotators."""
