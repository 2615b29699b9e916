"""Receipts: selecting events, issuing signed receipts, and verifying them offline."""
