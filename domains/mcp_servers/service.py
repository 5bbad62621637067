"""The rules of MCP server configurations (domains.md section 4).

Every change is one write transaction run through ``engine.indexes.transact``. Expected ETags
are compared inside that transaction, against the JSON the web layer sends (``codec.to_json``).
An import checks every entry before it opens the transaction, then writes all the valid ones in
that single transaction: either all of them are stored or (on a store failure) none is.
"""

from __future__ import annotations

import builtins
import datetime as _dt

from domains.common import Clock, Limit, Page, check_limit, etag_of, utc_now
from domains.errors import NotFoundError, PreconditionFailedError, ValidationError
from domains.mcp_servers import codec, repository
from domains.mcp_servers.commands import McpServerConfig, check_server_id
from domains.mcp_servers.import_document import ImportDocument, parse_import_entry
from domains.mcp_servers.models import (
    FAILED,
    IMPORTED,
    ImportEntryResult,
    ImportResult,
    McpServer,
)
from engine import Store, Transaction
from engine.indexes import transact


class McpServerService:
    def __init__(self, store: Store, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def etag(server: McpServer) -> str:
        return etag_of(codec.to_json(server))

    def _now(self) -> _dt.datetime:
        now = self.clock()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    @classmethod
    def _check_etag(cls, server: McpServer | None, server_id: str, expected: str | None) -> None:
        if expected is None:
            return
        if server is None or cls.etag(server) != expected:
            raise PreconditionFailedError(
                f"MCP server {server_id!r} has changed (ETag mismatch)", field="If-Match"
            )

    @staticmethod
    def _store(txn: Transaction, server_id: str, config: McpServerConfig,
               now: _dt.datetime) -> tuple[McpServer, bool]:
        current = repository.get(txn, server_id)
        created_at = now if current is None else current.created_at
        server = config.record(server_id, created_at, now)
        return server, repository.put(txn, server)

    # -- reads ------------------------------------------------------------------------------------
    def get(self, server_id: str) -> McpServer:
        with self.store.begin() as txn:
            server = repository.get(txn, server_id)
        if server is None:
            raise NotFoundError(f"MCP server {server_id!r} does not exist", field="serverId")
        return server

    def list(self, *, limit: Limit = None, cursor: str | None = None) -> Page[McpServer]:
        """Every configuration, by serverId (code-point order)."""
        n = check_limit(limit)
        with self.store.begin() as txn:
            items, next_cursor = repository.page(txn, limit=n, cursor=cursor)
        return Page(items, next_cursor)

    def enabled_configurations(self) -> builtins.list[McpServer]:
        """Every enabled configuration, by serverId, in one read (startup loading)."""
        with self.store.begin() as txn:
            return repository.enabled(txn)

    # -- writes -----------------------------------------------------------------------------------
    def configure(
        self, server_id: str, config: McpServerConfig, expected_etag: str | None = None
    ) -> tuple[McpServer, bool]:
        """Upsert by serverId (PUT replaces the whole configuration; createdAt is kept).
        A ``serverId`` in the configuration must be the addressed one. Returns (configuration,
        created)."""
        check_server_id(server_id, config)

        def go(txn: Transaction) -> tuple[McpServer, bool]:
            self._check_etag(repository.get(txn, server_id), server_id, expected_etag)
            return self._store(txn, server_id, config, self._now())

        return transact(self.store, go)

    put = configure

    def delete(self, server_id: str, expected_etag: str | None = None) -> None:
        def go(txn: Transaction) -> None:
            current = repository.get(txn, server_id)
            if current is None:
                raise NotFoundError(f"MCP server {server_id!r} does not exist", field="serverId")
            self._check_etag(current, server_id, expected_etag)
            repository.delete(txn, server_id)

        transact(self.store, go)

    def import_servers(self, document: ImportDocument) -> ImportResult:
        """Import ``{"mcpServers": {...}}``: the valid entries in one transaction, the invalid
        ones reported (status ``failed`` and the reason) without blocking the others."""
        entries = document.mcp_servers
        results: dict[str, ImportEntryResult] = {}
        valid: list[tuple[str, McpServerConfig]] = []
        for server_id, entry in entries.items():
            try:
                config = parse_import_entry(server_id, entry)
            except ValidationError as exc:
                results[server_id] = ImportEntryResult(FAILED, exc.detail)
                continue
            valid.append((server_id, config))
            results[server_id] = ImportEntryResult(IMPORTED, "")  # message set after the write

        def go(txn: Transaction) -> dict[str, bool]:
            now = self._now()
            return {sid: self._store(txn, sid, config, now)[1] for sid, config in valid}

        created = transact(self.store, go) if valid else {}
        for sid, was_created in created.items():
            results[sid] = ImportEntryResult(IMPORTED, "created" if was_created else "replaced")
        ordered = {sid: results[sid] for sid in entries}
        return ImportResult(
            imported_count=len(created), failed_count=len(entries) - len(created), results=ordered
        )

    import_configurations = import_servers
