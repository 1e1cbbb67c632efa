"""MongoDB and Redis behind the domain's small interfaces (infergate.domain.ports)."""
