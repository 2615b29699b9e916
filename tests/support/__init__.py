"""Helpers of the tests: a server in a child process, a crashing writer, repository paths."""
