"""InferGate's shared code, shipped to every function as the `common` layer.

Layout, outermost first:
  api/       the HTTP edge: resolver, error bodies, request ids
  models/    pydantic models of what crosses the edge
  domain/    business rules; no AWS, driver or HTTP-client types
  stores/    MongoDB and Redis behind small interfaces
  llm/       the Ollama client
"""
