"""Adapters from the tools teams already run to the ledger's events: each module reads one
tool's own output (``litellm``: the ``StandardLoggingPayload`` of LiteLLM's ``generic_api``
logger) and turns it into events the ledger validates and appends like any other. They sit
above the event model and below the API: the service (``ledger.api.service``) calls them,
they call nothing above ``ledger.model``."""
