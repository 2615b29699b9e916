"""The HTTP server (docs/http-api.md): FastAPI over one open ``Ledger``, with API keys scoping
every read and write to one project. ``create_app(data_dir)`` builds the ASGI app;
``llmring serve`` runs it with uvicorn."""

from ledger.server.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
