"""The data directory on disk: its layout, durable writes, the journal, the manifest,
segments, receipt entries, the id index and conversation content."""
