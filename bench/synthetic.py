"""What the benchmarks ask for: a few code-generation task shapes to build many distinct instructions from."""

TASKS = (
    "returns the sum of a list of integers",
    "parses a CSV line and validates each field",
    "merges two sorted lists without using `sorted`",
    "reads a JSON file and returns the keys at depth two",
    "computes the edit distance between two strings",
    "retries an HTTP request with exponential backoff",
    "flattens a nested dictionary into dotted keys",
    "checks whether a string is a valid IPv4 address",
)
