"""llmring-ledger: an event-sourced, verifiable receipt ledger for LLM usage.

The embedded API is ``ledger.Ledger``; see the README for a tour.
"""

from ledger.events import Ack, Event, EventIn, EventValidationError, IdConflictError
from ledger.ledger import Ledger, LedgerError, LedgerLockedError

__all__ = ["Ack", "Event", "EventIn", "EventValidationError", "IdConflictError", "Ledger",
           "LedgerError", "LedgerLockedError"]
