"""domains layer."""
