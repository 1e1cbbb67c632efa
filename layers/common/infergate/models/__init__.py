"""pydantic models of everything that crosses InferGate's edges."""
