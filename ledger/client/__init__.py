"""Python clients: the async client of the API and ``LLMRing``."""
