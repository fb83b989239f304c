"""Argilla: the embedded annotation server and, later, the annotation dataset."""
