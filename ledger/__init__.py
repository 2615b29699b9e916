"""llmring-ledger: an event-sourced, verifiable receipt ledger for LLM usage.

The embedded API is ``ledger.Ledger``; see the README for a tour.
"""

from ledger.core.facade import Ledger, LedgerError, LedgerLockedError
from ledger.model.event import Ack, Event, EventIn, EventValidationError, IdConflictError

__all__ = ["Ack", "Event", "EventIn", "EventValidationError", "IdConflictError", "Ledger",
           "LedgerError", "LedgerLockedError"]
