"""Runs InferGate on a developer's machine without Docker.

`python -m devkit.run` (what `make run` calls) reads template.yaml and serves
its API the way `sam local start-api` would: API Gateway's routing, its
REQUEST authorizer and gateway responses, and each function in its own
worker processes. It also starts the backends the API needs.
"""
