"""pydantic schemas of everything that crosses InferGate's edges, one module per API surface.

They never import the domain: api/ translates between them and the domain's values.
"""
