"""Business rules and their own values, in plain Python: stores, the model server and telemetry
come in through ports (each beside the values it speaks of), and the package imports only the
standard library and itself (import-linter holds it: pyproject.toml)."""
