"""The REST API: a FastAPI app factory, one router per resource."""
