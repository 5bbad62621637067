"""One module per group of routes; each has ``add_routes(app, ctx)`` and ``PATHS`` (OpenAPI)."""
