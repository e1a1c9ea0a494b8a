"""gridsight's shared library: settings, event contracts, warehouse and bus adapters, SQL models.

Every service imports from here; services never import each other.
"""
