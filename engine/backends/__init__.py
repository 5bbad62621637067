"""The backends, one module or package each; ``engine.registry`` imports the chosen one lazily."""
