"""Unit tests: one module or object of ledger/ and projections/ at a time."""
