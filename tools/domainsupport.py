"""The domain collections, when the domain packages import.

``domains.registry.all_collections()`` is the authority. While a domain package is missing or
broken it raises, and the tools must keep working on raw data: then every package under
``domains/`` that imports and offers ``collections()`` is used, and the others are reported.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Discovery:
    collections: list[Any] = field(default_factory=list)
    #: domain package -> the names of its collections (for --domain by package name)
    packages: dict[str, list[str]] = field(default_factory=dict)
    #: what could not be imported, and why
    failures: dict[str, str] = field(default_factory=dict)
    #: True when the registry's complete list was used
    complete: bool = False

    def by_name(self) -> dict[str, Any]:
        return {c.name: c for c in self.collections}


def discover() -> Discovery:
    found = Discovery()
    try:
        import domains
    except Exception as exc:  # the tools never depend on the domains layer importing
        found.failures["domains"] = f"{type(exc).__name__}: {exc}"
        return found
    for info in pkgutil.iter_modules(domains.__path__):
        if not info.ispkg:
            continue
        try:
            package = importlib.import_module(f"domains.{info.name}")
            make = getattr(package, "collections", None)
            if make is None:
                continue
            cols = list(make())
        except Exception as exc:
            found.failures[info.name] = f"{type(exc).__name__}: {exc}"
            continue
        found.packages[info.name] = [c.name for c in cols]
        found.collections.extend(cols)
    try:
        from domains.registry import all_collections

        registered = list(all_collections())
    except Exception as exc:
        found.failures.setdefault("registry", f"{type(exc).__name__}: {exc}")
    else:
        found.collections = registered
        found.complete = True
    seen: set[str] = set()
    unique = []
    for c in found.collections:
        if c.name not in seen:
            seen.add(c.name)
            unique.append(c)
    found.collections = unique
    return found


def expand_domains(names: list[str], discovery: Discovery | None) -> set[str]:
    """Domain filters as collection / sequence / TTL space names: a domain package name (e.g.
    ``agent_definitions``) stands for every collection of that package."""
    out: set[str] = set()
    for name in names:
        out.add(name)
        if discovery is not None:
            out.update(discovery.packages.get(name, ()))
    return out
