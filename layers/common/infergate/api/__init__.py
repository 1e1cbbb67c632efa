"""The HTTP edge shared by every API function."""
