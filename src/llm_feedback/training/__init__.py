"""The train stage's parts: what it trains on, the TRL settings, checkpoints, progress, and what it writes."""
