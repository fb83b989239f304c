"""Argilla, embedded or hosted: the connection, the annotation dataset and its records, push, pull and annotators."""
