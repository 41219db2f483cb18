"""Client and operations HTTP surfaces: thin handlers."""
