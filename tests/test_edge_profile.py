"""The edge profile (lmdb, file) installs and runs without SQLAlchemy or psycopg."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ROUND_TRIP = textwrap.dedent(
    """
    import sys, tempfile
    from engine import open_store, errors
    d = tempfile.mkdtemp()
    for provider in ("lmdb", "file"):
        s = open_store(provider, data_dir=d)
        with s.begin(write=True) as t:
            t.put(b"k", provider.encode())
            assert t.put(b"k", b"again", overwrite=False) is False
        s.close()
        s = open_store(provider, data_dir=d)
        with s.begin() as t:
            assert t.get(b"k") == provider.encode(), provider
            assert list(t.scan()) == [(b"k", provider.encode())]
        s.close()
    sql = [m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "psycopg", "psycopg2")]
    assert not sql, sql
    print("EDGE-OK")
    """
)

SQL_WITHOUT_EXTRA = textwrap.dedent(
    """
    import tempfile
    from engine import open_store, errors
    for provider, kw in (("sqlite", {"data_dir": tempfile.mkdtemp()}),
                         ("postgresql", {"database_url": "postgresql://u@127.0.0.1:1/db"})):
        try:
            open_store(provider, **kw)
        except errors.ConfigurationError as exc:
            assert "pip install" in str(exc) and "[sql]" in str(exc), exc
        else:
            raise SystemExit(provider + " opened without the sql extra")
    print("SQL-REFUSED-OK")
    """
)

# Makes sqlalchemy and psycopg unimportable, as in an install without the extra.
HIDE_SQL = textwrap.dedent(
    """
    import importlib.abc, sys
    class _NoSql(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("sqlalchemy", "psycopg"):
                raise ImportError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, _NoSql())
    """
)


def _python(code: str, python: str = sys.executable, cwd: Path | None = ROOT) -> str:
    proc = subprocess.run(
        [python, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_choosing_lmdb_or_file_imports_no_sql_module() -> None:
    assert "EDGE-OK" in _python(ROUND_TRIP)


def test_sql_provider_without_the_extra_names_the_install_command() -> None:
    assert "SQL-REFUSED-OK" in _python(HIDE_SQL + SQL_WITHOUT_EXTRA)


@pytest.mark.slow
def test_fresh_virtualenv_without_the_sql_extra(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    install = subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    listed = subprocess.run(
        [py, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, env=env
    ).stdout.lower()
    assert "sqlalchemy" not in listed and "psycopg" not in listed, listed
    assert "lmdb" in listed and "falcon" in listed and "waitress" in listed
    # Run from outside the checkout so the installed package, not the source tree, is imported.
    out = _python(ROUND_TRIP + SQL_WITHOUT_EXTRA, python=py, cwd=tmp_path)
    assert "EDGE-OK" in out and "SQL-REFUSED-OK" in out
