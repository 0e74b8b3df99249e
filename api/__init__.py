"""The platform's HTTP API (FastAPI): accounts and tokens, repair tickets and
health checks; ``campus api`` serves it (docs/api.md). Nothing is imported
here, so that every other ``campus`` command starts without FastAPI."""
