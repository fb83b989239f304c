"""One thin module per DVC stage: read params, call the library, write artifacts atomically, print a summary."""
