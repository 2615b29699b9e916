"""The write core behind the ``Ledger`` façade, and the audit of a whole data directory."""
