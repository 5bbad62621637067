"""How the settings table is declared, read and documented.

Each setting is one attrs field of ``web.settings.Settings`` made by :func:`setting`: the field's
annotation is its type, and its metadata (a :class:`Spec`) the environment variable, the accepted
range or choices, the value under the low-power preset, the description and whether it is a
secret. Reading the environment, the error messages, the presets and the README's configuration
table are all derived here from those fields, so that adding a setting is adding one field.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any, Union, get_args, get_origin

import attrs

#: The key of a field's metadata that holds its Spec.
SPEC_KEY = "setting"

#: The presets (AUTOBYTEUS_PRESET): each changes only defaults. "default" changes nothing.
PRESET_NAMES = ("default", "low-power")


class SettingsError(ValueError):
    """A setting has a value this server does not accept."""


#: The words a switch (a ``bool`` setting) accepts, in any case.
_SWITCH_ON = ("1", "true", "yes", "on")
_SWITCH_OFF = ("0", "false", "no", "off")

#: Marks "this preset keeps the default".
_UNCHANGED: Any = object()


@attrs.frozen
class Spec:
    """What the table says about one setting, beside its name, type and default."""

    env: str
    description: str
    low: int | float | None = None
    high: int | float | None = None
    choices: tuple[str, ...] = ()
    #: How a value is normalised before it is checked (e.g. ``str.lower``).
    normalise: Callable[[str], str] | None = None
    #: A further check of a value; raises SettingsError with the given label in the message.
    check: Callable[[str, Any], None] | None = None
    #: Value under each preset that changes it (preset name -> value).
    presets: Mapping[str, Any] = attrs.field(factory=dict)
    secret: bool = False
    #: The default as the README says it, when the field's own default (None) means
    #: "decided elsewhere" (e.g. the engine's own LMDB map size).
    shown_default: str | None = None
    #: "bytes", "seconds" or "ms": how numbers are shown in the README.
    unit: str | None = None
    #: The command-line flag of ``autobyteus-server`` that wins over the variable, if any.
    flag: str | None = None


def setting(
    env: str,
    default: Any,
    description: str,
    *,
    low: int | float | None = None,
    high: int | float | None = None,
    choices: tuple[str, ...] = (),
    normalise: Callable[[str], str] | None = None,
    check: Callable[[str, Any], None] | None = None,
    low_power: Any = _UNCHANGED,
    secret: bool = False,
    shown_default: str | None = None,
    unit: str | None = None,
    flag: str | None = None,
) -> Any:
    """One entry of the settings table: an attrs field carrying its Spec (secrets stay out of
    the settings' repr)."""
    presets = {} if low_power is _UNCHANGED else {"low-power": low_power}
    spec = Spec(env, description, low, high, choices, normalise, check, presets, secret,
                shown_default, unit, flag)
    return attrs.field(default=default, repr=not secret, metadata={SPEC_KEY: spec})


@attrs.frozen
class Entry:
    """One row of the table: the field's name, its value type, whether None is allowed, and its
    Spec."""

    name: str
    kind: type
    optional: bool
    default: Any
    spec: Spec

    def parse(self, raw: str, label: str) -> Any:
        """The typed value of ``raw`` (text from the environment or a flag); SettingsError when
        the table does not accept it."""
        text = raw.strip()
        if self.spec.normalise is not None:
            text = self.spec.normalise(text)
        if self.kind is bool:
            if text.lower() in _SWITCH_ON:
                value: Any = True
            elif text.lower() in _SWITCH_OFF:
                value = False
            else:
                raise SettingsError(f"{label}={raw!r} is not a switch; it accepts 1 or 0")
        elif self.kind is int:
            try:
                value = int(text)
            except ValueError:
                raise SettingsError(
                    f"{label}={raw!r} is not an integer; it accepts {self.range_text()}"
                ) from None
        elif self.kind is float:
            try:
                value = float(text)
            except ValueError:
                raise SettingsError(
                    f"{label}={raw!r} is not a number; it accepts {self.range_text()}"
                ) from None
        else:
            value = text
        self.check(value, label)
        return value

    def check(self, value: Any, label: str) -> None:
        """SettingsError unless ``value`` (already typed) is one this entry accepts."""
        if value is None:
            if self.optional:
                return
            raise SettingsError(f"{label} needs a value")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise SettingsError(f"{label}={value!r} is not a switch; it accepts 1 or 0")
        elif self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SettingsError(f"{label}={value!r} is not a number; "
                                    f"it accepts {self.range_text()}")
            low, high = self.spec.low, self.spec.high
            if (low is not None and not value >= low) or (high is not None and not value <= high):
                raise SettingsError(
                    f"{label}={value} is out of range; it accepts {self.range_text()}"
                )
        elif not isinstance(value, self.kind):
            raise SettingsError(f"{label}={value!r} is not {self.kind.__name__}")
        if self.spec.choices and value not in self.spec.choices:
            raise SettingsError(
                f"{label}={value!r} is not accepted; it accepts "
                + ", ".join(self.spec.choices)
            )
        if self.spec.check is not None:
            self.spec.check(label, value)

    def range_text(self) -> str:
        low = "" if self.spec.low is None else _number(self.spec.low)
        high = "" if self.spec.high is None else _number(self.spec.high)
        return f"{low}..{high}"

    def preset_value(self, preset: str) -> Any:
        return self.spec.presets.get(preset, self.default)


def entries(cls: type) -> list[Entry]:
    """The table of ``cls`` (an attrs class whose fields were made by :func:`setting`), in
    declaration order."""
    attrs.resolve_types(cls)
    table = []
    for field in attrs.fields(cls):
        spec = field.metadata.get(SPEC_KEY)
        if spec is None:
            continue
        kind, optional = _value_type(field.type)
        table.append(Entry(field.name, kind, optional, field.default, spec))
    return table


def _value_type(annotation: Any) -> tuple[type, bool]:
    """``int`` -> (int, False); ``int | None`` -> (int, True)."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"a setting has one value type, not {annotation!r}")
        return members[0], True
    return annotation, False


def read(
    table: list[Entry],
    environ: Mapping[str, str],
    overrides: Mapping[str, Any],
    preset: str,
) -> dict[str, Any]:
    """Every entry's value: an override (a command-line flag) wins over its variable, which wins
    over the preset's value, which wins over the default. Empty or blank variables are unset."""
    values: dict[str, Any] = {}
    for entry in table:
        override = overrides.get(entry.name)
        if override is not None:
            flag = entry.spec.flag or "--" + entry.name.replace("_", "-")
            label = f"{flag}/{entry.spec.env}"
            if isinstance(override, str):
                values[entry.name] = entry.parse(override, label)
            else:
                entry.check(override, label)
                values[entry.name] = override
            continue
        raw = environ.get(entry.spec.env)
        if raw is None or not raw.strip():
            values[entry.name] = entry.preset_value(preset)
        else:
            values[entry.name] = entry.parse(raw, entry.spec.env)
    return values


def check_all(table: list[Entry], instance: Any) -> None:
    """Every value of ``instance`` is one the table accepts (also for settings made in code)."""
    for entry in table:
        entry.check(getattr(instance, entry.name), entry.spec.env)


# -- documentation ---------------------------------------------------------------------------------
def markdown_table(table: list[Entry]) -> str:
    """The README's configuration table, one row per setting."""
    lines = [
        "| variable | accepts | default | low-power | meaning |",
        "|---|---|---|---|---|",
    ]
    for entry in table:
        spec = entry.spec
        low_power = spec.presets.get("low-power", _UNCHANGED)
        lines.append(
            f"| `{spec.env}` | {_accepts(entry)} | {_shown_default(entry)} | "
            f"{'' if low_power is _UNCHANGED else _shown(entry, low_power)} | "
            f"{spec.description}{f' (flag `{spec.flag}`)' if spec.flag else ''}"
            f"{' (secret: never shown)' if spec.secret else ''} |"
        )
    return "\n".join(lines) + "\n"


def _accepts(entry: Entry) -> str:
    spec = entry.spec
    if spec.choices:
        return ", ".join(f"`{c}`" for c in spec.choices)
    if entry.kind is bool:
        return "`1` or `0` (also true/false, yes/no, on/off)"
    if entry.kind in (int, float) and spec.unit == "bytes":
        return f"{_size(spec.low)}..{_size(spec.high)}"
    if entry.kind in (int, float):
        unit = f" {spec.unit}" if spec.unit else ""
        return f"{entry.range_text()}{unit}"
    return "text"


def _size(value: int | float | None) -> str:
    """A byte count as the README says it: 1 KiB, 64 MiB, 1 TiB (exact multiples only)."""
    if value is None:
        return ""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if value >= 1 << shift and value % (1 << shift) == 0:
            return f"{int(value) >> shift} {unit}"
    return f"{_number(value)} bytes"


def _shown_default(entry: Entry) -> str:
    if entry.spec.shown_default is not None:
        return entry.spec.shown_default
    return _shown(entry, entry.default)


def _shown(entry: Entry, value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = f"`{_number(value)}`"
        if entry.spec.unit == "bytes" and value >= 1024:
            text += f" ({_size(value)})"
        return text
    return f"`{value}`"


def _number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)
