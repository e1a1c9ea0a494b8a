"""One module per area of the `gridsight` CLI; each exposes `register(app)`."""
