"""The settings table (web/settings.py): every setting is one entry, reading, errors, presets and
the README's table come from it, and nothing else in web/ or tools/ reads those variables."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import attrs
import pytest

from web.settings import FIELDS, PRESETS, README, TABLE, Settings, SettingsError, readme_with_table
from web.settings_table import markdown_table

ROOT = Path(__file__).resolve().parents[2]
VARIABLES = {entry.spec.env for entry in TABLE}


def test_the_readme_table_is_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")
    assert readme_with_table(text) == text, (
        "README.md's configuration table differs from web/settings.py; regenerate it with: "
        "python -m web.settings --update-readme"
    )
    # one row per setting, each naming its variable
    assert markdown_table(TABLE).count("\n| `") == len(TABLE)
    for variable in VARIABLES:
        assert f"| `{variable}` |" in text


def test_every_field_is_an_entry_with_its_own_variable() -> None:
    assert [f.name for f in attrs.fields(Settings)] == [e.name for e in TABLE]
    assert len(VARIABLES) == len(TABLE)
    for entry in TABLE:
        assert entry.spec.description, entry.name
        entry.check(entry.default, entry.spec.env)  # the default is a value it accepts
        for value in entry.spec.presets.values():
            entry.check(value, entry.spec.env)


def test_the_presets_come_from_the_entries() -> None:
    assert PRESETS == {
        "default": {},
        "low-power": {"threads": 2, "lmdb_map_size": 8 << 20, "ttl_sweep_interval_s": 600.0,
                      "outbox_poll_interval_s": 30.0},
    }
    low = Settings.from_env({"AUTOBYTEUS_PRESET": "low-power"})
    for entry in TABLE:
        expected = PRESETS["low-power"].get(entry.name, entry.default)
        if entry.name != "preset":
            assert getattr(low, entry.name) == expected, entry.name


def _bad_values(entry: Any) -> list[str]:
    spec = entry.spec
    if spec.choices:
        return ["no-such-" + spec.choices[0]]
    if entry.kind in (int, float):
        bad = ["many"]
        if spec.low is not None:
            bad.append(str(spec.low - 1))
        if spec.high is not None:
            bad.append(str(spec.high + 1))
        return bad
    return []


@pytest.mark.parametrize("entry", [e for e in TABLE if _bad_values(e)], ids=lambda e: e.name)
def test_a_bad_value_names_the_variable_and_what_it_accepts(entry: Any) -> None:
    for raw in _bad_values(entry):
        with pytest.raises(SettingsError) as info:
            Settings.from_env({entry.spec.env: raw})
        message = str(info.value)
        assert message.startswith(entry.spec.env + "="), message
        if entry.spec.choices:
            assert ", ".join(entry.spec.choices) in message
        else:
            assert entry.range_text() in message


def test_blank_is_unset_and_a_flag_wins_over_its_variable() -> None:
    blank = Settings.from_env({e.spec.env: "  " for e in TABLE})
    assert blank == Settings()
    env = {"AUTOBYTEUS_PORT": "9000", "AUTOBYTEUS_HOST": "0.0.0.0"}
    assert Settings.from_env(env).port == 9000
    assert Settings.from_env(env, port=9001, host=None).port == 9001
    assert Settings.from_env(env, host=None).host == "0.0.0.0"
    with pytest.raises(SettingsError, match=r"^--port/AUTOBYTEUS_PORT=70000 is out of range"):
        Settings.from_env({}, port=70000)
    with pytest.raises(TypeError):
        Settings.from_env({}, no_such_setting=1)


def test_only_reads_the_named_settings() -> None:
    env = {"AUTOBYTEUS_PORT": "not a port", "PERSISTENCE_PROVIDER": "SQLite",
           "AUTOBYTEUS_PRESET": "low-power"}
    settings = Settings.from_env(env, only=("provider", "data_dir"))
    assert settings.provider == "sqlite" and settings.port == FIELDS["port"].default
    assert settings.preset == "default" and settings.threads == FIELDS["threads"].default
    assert Settings.from_env(env, only=("preset", "threads")).threads == 2
    with pytest.raises(SettingsError, match="AUTOBYTEUS_PORT"):
        Settings.from_env(env)


def test_settings_made_in_code_are_checked_by_the_same_table() -> None:
    with pytest.raises(SettingsError, match="AUTOBYTEUS_THREADS=0 is out of range"):
        Settings(threads=0)
    with pytest.raises(SettingsError, match="PERSISTENCE_PROVIDER=postgresql needs"):
        Settings(provider="postgresql")


def test_secrets_stay_out_of_the_repr() -> None:
    secrets = {e.name: f"secret-{e.name}-value" for e in TABLE if e.spec.secret}
    assert {"api_token", "gateway_shared_secret", "callback_shared_secret"} <= set(secrets)
    text = repr(Settings(**secrets))
    for value in secrets.values():
        assert value not in text


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_nothing_but_the_table_names_a_setting_variable() -> None:
    offenders = []
    for package in ("web", "tools"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "web" / "settings.py":
                continue
            for line, value in _string_constants(path):
                if value in VARIABLES:
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {value}")
    assert offenders == [], "read settings through web.settings.Settings only"
