"""The HTTP API: FastAPI app, auth, error mapping, metrics and the recommendation service behind it."""
