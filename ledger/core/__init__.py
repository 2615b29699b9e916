"""The write core behind the ``Ledger`` façade, the audit of a whole data directory, and
retention of conversation content."""
