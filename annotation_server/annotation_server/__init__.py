"""The embedded annotation server: the unmodified argilla-server 2.8.0 on SQLite, without Elasticsearch or Redis.

Run it with `python -m annotation_server --data-dir DIR --port PORT` (see `launcher.py` for the contract). Importing
this package does not import argilla_server: the launcher must set the environment first.
"""

ENGINE_NAME = "sqlite-fts"
"""The name our search engine is registered under (the launcher sets ARGILLA_SEARCH_ENGINE to it)."""

__version__ = "0.1.0"
