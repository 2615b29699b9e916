"""The data directory on disk: its layout, durable writes, the journal, the manifest, segments,
the id index, conversation content and retention.
"""
