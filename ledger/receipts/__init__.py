"""Receipts: selecting events, issuing signed receipts, their entries in the log, and offline
verification.
"""
