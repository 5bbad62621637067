"""Command-line tools over the engine: dump, stats, load, backup, migrate, check.

``tools.cli`` is ``autobyteus-store`` (one ``cmd_<name>`` per subcommand); ``tools.dump`` is
``autobyteus-dump``. They read raw engine data by the index layer's key layout, and use the domain
collections (domains.registry) where record semantics are needed and the domains import.
"""
