"""Integration tests: real servers, child processes, the CLI and the examples."""
