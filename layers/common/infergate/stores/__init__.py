"""MongoDB and Redis behind the domain's small interfaces: each port lives beside the values it
speaks of (domain.ledger, domain.admission, domain.accounts, domain.authentication)."""
