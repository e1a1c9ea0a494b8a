"""The embedded runtime (dispatcher, supervisor) and the `gridsight` command line."""
