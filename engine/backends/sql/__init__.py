"""The SQL backends, SQLAlchemy Core over one key-value table: the shared part
(:mod:`~engine.backends.sql.common`: schema, statements, scans in pages, the one choke point for
driver errors), SQLite (:mod:`~engine.backends.sql.sqlite`) and PostgreSQL
(:mod:`~engine.backends.sql.postgresql`). Only the ``full`` profile imports this package.
"""
