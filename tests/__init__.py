"""The test suite: unit (one module at a time), contract (one API, two transports),
integration (servers, processes, the CLI)."""
