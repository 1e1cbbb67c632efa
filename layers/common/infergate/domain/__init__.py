"""Business rules. Everything here is plain Python: stores and clients come in as arguments."""
