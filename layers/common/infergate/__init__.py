"""InferGate's shared code, shipped to every function as the `common` layer.

Layout, outermost first:
  api/         the HTTP edge: the resolver, the error table, and one translator per API surface
  schemas/     pydantic shapes of what crosses the edge, one module per API surface
  bootstrap.py the composition root: every service, built once per instance from settings and clients
  domain/      rules and their own values; imports nothing outward (no HTTP, pydantic, drivers)
  stores/      MongoDB and Redis behind the domain's ports
  llm/         the model server's client, behind the domain's ModelServer port
"""
