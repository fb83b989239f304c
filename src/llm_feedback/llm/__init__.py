"""LLM backends behind one async interface, and the runner that drives them."""
