"""Re-running from a run folder: `--config RUN_DIR/config.json` and `--set FIELD=VALUE`.

Every paper's `run` writes its resolved config into the run folder's `config.json`
(`shared.tracking.runs.make_run_dir`, through `to_jsonable`: dataclasses become objects,
tuples become lists). `read_config` reads such a file back into the paper's config
dataclass, using the preset's values as the template of each field's type: lists become
tuples again, nested dataclasses (covidnet-siamese's `Difficulty`) are rebuilt, ints of a
float field become floats. `apply_overrides` sets fields from `--set FIELD=VALUE` text, each
value parsed against its field's type: a bool (true / false), an int, a finite float, text,
a tuple (comma-separated, or a JSON list), a dict (a JSON object), `none` where the field
may be None, and a nested field by its dotted name (`difficulty.shared_texture=0.2`,
`default_batch_size.single=8`).

    config = run_config(args, get_config)                       # in a paper's `run`
    config = read_config("runs/hrpqct/tiny_seed0", get_config("tiny"))
    config = apply_overrides(config, ["epochs=3", "baseline_filters=4,4,8,8,8"])

Bad input raises ValueError with one line naming the file (or the `--set` item), the
field, what was expected and what was received; `medrepro` prints it and exits with
status 2. A config.json of another paper is refused: its fields are not this paper's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path

_NONE_WORDS = ("none", "null")
_TRUE_WORDS = ("true", "1", "yes")
_FALSE_WORDS = ("false", "0", "no")


class _BadValue(Exception):
    """A value that does not fit its field: `field` (dotted) expected `expected`."""

    def __init__(self, field: str, expected: str, received):
        super().__init__(field, expected, received)
        self.field, self.expected, self.received = field, expected, received


class _UnknownField(Exception):
    """A name `--set` or a file cannot set: `message`, and the `valid` names."""

    def __init__(self, message: str, valid: list):
        super().__init__(message, valid)
        self.message, self.valid = message, valid


# Field types ---------------------------------------------------------------------------

def _is_dataclass_value(value) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _optional(hint):
    """(hint without None, whether None is allowed) of `Optional[X]` / `X | None`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        rest = tuple(a for a in args if a is not type(None))
        return (rest[0] if len(rest) == 1 else typing.Any), len(rest) < len(args)
    return hint, False


def _kind(hint, template) -> str:
    """What a field holds: bool, int, float, str, tuple, dict, dataclass or any.

    The annotation decides where it names one of these; `object`, `Any` or none at all
    leave it to the template (the preset's value): `folds_run: object = None` holds an
    int in the presets that set it.
    """
    if _is_dataclass_value(template):
        return "dataclass"
    base = typing.get_origin(hint) or hint
    for kind, cls in (("bool", bool), ("int", int), ("float", float), ("str", str),
                      ("tuple", tuple), ("tuple", list), ("dict", dict)):
        if base is cls:
            return kind
    for kind, cls in (("bool", bool), ("int", int), ("float", float), ("str", str),
                      ("tuple", (tuple, list)), ("dict", dict)):
        if isinstance(template, cls):
            return kind
    return "any"


def _items(hint, template, n: int, field: str) -> list:
    """(hint, template) of each of the `n` items of a tuple field."""
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:
        first = template[0] if isinstance(template, (tuple, list)) and template else None
        return [(args[0], first)] * n
    given = tuple(template) if isinstance(template, (tuple, list)) else ()
    if args:
        if n != len(args):
            raise _BadValue(field, f"{len(args)} items", n)
        return [(a, given[i] if i < len(given) else None) for i, a in enumerate(args)]
    if given and len({_kind(object, t) for t in given}) == 1:
        return [(object, given[0])] * n
    if given and n == len(given):
        return [(object, t) for t in given]
    return [(object, None)] * n


def _describe(kind: str, hint=None, template=None, nullable=False) -> str:
    text = {
        "bool": "true or false (bool)",
        "int": "a whole, finite number (int)",
        "float": "a finite number (float)",
        "str": "text (str)",
        "dict": "a JSON object (dict)",
        "any": "a value",
    }.get(kind)
    if kind == "tuple":
        given = tuple(template) if isinstance(template, (tuple, list)) else ()
        args = typing.get_args(hint)
        item_kinds = ({_kind(args[0], given[0] if given else None)}
                      if len(args) == 2 and args[1] is Ellipsis
                      else {_kind(a, None) for a in args} if args
                      else {_kind(object, t) for t in given})
        item = item_kinds.pop() if len(item_kinds) == 1 else None
        text = ("comma-separated values or a JSON list (tuple)" if item in (None, "any")
                else "a JSON list of lists (tuple of tuple)" if item == "tuple"
                else f"comma-separated {item}s or a JSON list (tuple of {item})")
    elif kind == "dataclass":
        text = f"a JSON object of {type(template).__name__}'s fields"
    return f"{text} or none" if nullable else text


def _deep_tuple(value):
    if isinstance(value, list):
        return tuple(_deep_tuple(v) for v in value)
    if isinstance(value, dict):
        return {k: _deep_tuple(v) for k, v in value.items()}
    return value


def _coerce(value, hint, template, nullable: bool, field: str):
    """`value` (as JSON gives it) converted to the field's type; _BadValue if it does not fit."""
    hint, optional = _optional(hint)
    nullable = nullable or optional
    if value is None:
        if nullable or _kind(hint, template) == "any":
            return None
        raise _BadValue(field, _describe(_kind(hint, template), hint, template), value)
    kind = _kind(hint, template)
    bad = _BadValue(field, _describe(kind, hint, template, nullable), value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise bad
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise bad
        return value
    if kind == "tuple":
        if not isinstance(value, (list, tuple)):
            raise bad
        specs = _items(hint, template, len(value), field)
        return tuple(_coerce(v, h, t, False, f"{field}[{i}]")
                     for i, (v, (h, t)) in enumerate(zip(value, specs)))
    if kind == "dict":
        if not isinstance(value, dict):
            raise bad
        args = typing.get_args(hint)
        given = template if isinstance(template, dict) else {}
        values = list(given.values())
        same = values[0] if values and len({_kind(object, v) for v in values}) == 1 else None
        return {str(k): _coerce(v, args[1] if len(args) == 2 else object,
                                given.get(str(k), same), False, f"{field}.{k}")
                for k, v in value.items()}
    if kind == "dataclass":
        if not isinstance(value, dict):
            raise bad
        return _dataclass_from(value, template, field)
    return _deep_tuple(value)


def _field_table(template) -> dict:
    """name -> (hint, current value, whether None is allowed) of a dataclass value."""
    cls = type(template)
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that does not resolve: use the values
        hints = {}
    return {f.name: (hints.get(f.name, object), getattr(template, f.name),
                     f.default is None) for f in dataclasses.fields(cls)}


def _dataclass_from(values: dict, template, prefix: str = ""):
    """`template` with the fields named in `values` replaced (nested ones rebuilt)."""
    table = _field_table(template)
    unknown = [k for k in values if k not in table]
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise _UnknownField(f"unknown field {where!r} ({type(template).__name__} has no field "
                            f"{unknown[0]!r})", field_names(template, prefix))
    changes = {}
    for name, value in values.items():
        hint, current, nullable = table[name]
        changes[name] = _coerce(value, hint, current, nullable,
                                f"{prefix}.{name}" if prefix else name)
    return dataclasses.replace(template, **changes)


def field_names(config, prefix: str = "") -> list:
    """The names `--set` accepts for `config`: its fields, nested ones dotted.

    >>> field_names(covidnet_siamese.config.tiny())[:3]
    ['name', 'counts', 'val_fraction']
    """
    names = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        name = f"{prefix}.{f.name}" if prefix else f.name
        names.extend(field_names(value, name) if _is_dataclass_value(value) else [name])
    return names


# --set FIELD=VALUE ----------------------------------------------------------------------

def _from_text(text: str, hint, template, nullable: bool, field: str):
    """The value `text` gives a field of this type (see the module docstring)."""
    hint, optional = _optional(hint)
    nullable = nullable or optional
    text = text.strip()
    kind = _kind(hint, template)
    bad = _BadValue(field, _describe(kind, hint, template, nullable), text)
    if text.lower() in _NONE_WORDS and (nullable or kind == "any"):
        return None
    if kind == "bool":
        if text.lower() in _TRUE_WORDS:
            return True
        if text.lower() in _FALSE_WORDS:
            return False
        raise bad
    if kind == "int":
        try:
            return int(text, 10)
        except ValueError:
            raise bad from None
    if kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise bad from None
        if not math.isfinite(value):
            raise bad
        return value
    if kind == "str":
        return text
    if kind in ("dict", "dataclass") or (kind == "tuple" and text.startswith("[")):
        try:
            value = json.loads(text)
        except ValueError:
            raise bad from None
        return _coerce(value, hint, template, nullable, field)
    if kind == "tuple":
        parts = [part for part in text.split(",") if part.strip()]
        specs = _items(hint, template, len(parts), field)
        if any(_kind(h, t) in ("tuple", "dict", "dataclass") for h, t in specs):
            raise bad  # nested items need the JSON list form
        return tuple(_from_text(p, h, t, False, f"{field}[{i}]")
                     for i, (p, (h, t)) in enumerate(zip(parts, specs)))
    try:  # any: a JSON scalar, else the text itself
        return _deep_tuple(json.loads(text))
    except ValueError:
        return text


def _set_path(container, path: list, text: str, done: str):
    """`container` (a dataclass or dict value) with the field at `path` set from `text`."""
    name, rest = path[0], path[1:]
    where = f"{done}.{name}" if done else name
    if _is_dataclass_value(container):
        table = _field_table(container)
        if name not in table:
            raise _UnknownField(f"unknown field {where!r} ({type(container).__name__} has "
                                f"no field {name!r})", field_names(container, done))
        hint, current, nullable = table[name]
    else:
        if name not in container:
            raise _UnknownField(f"unknown field {where!r} ({done} has no key {name!r})",
                                [f"{done}.{k}" for k in container])
        hint, current, nullable = object, container[name], False
    if rest:
        if not (_is_dataclass_value(current) or isinstance(current, dict)):
            raise _UnknownField(f"unknown field {'.'.join([where] + rest)!r} ({where} has "
                                f"no fields of its own)", [where])
        new = _set_path(current, rest, text, where)
    elif _is_dataclass_value(current):
        raise _UnknownField(f"{where} is a group of fields; set one of them",
                            field_names(current, where))
    else:
        new = _from_text(text, hint, current, nullable, where)
    if _is_dataclass_value(container):
        return dataclasses.replace(container, **{name: new}) if done else {name: new}
    return {**container, name: new}


def parse_overrides(items, config) -> dict:
    """`--set FIELD=VALUE` items as field -> typed value, checked against `config`.

    A dotted name sets a field of a nested dataclass or a key of a dict field; the
    top-level field then maps to the whole new nested value.

    Args:
        items: iterable of str, "FIELD=VALUE" ("sigma=0.2", "head_units=16,8",
            "folds_run=none", "difficulty.shared_texture=0.2"). Dashes in FIELD count
            as underscores.
        config: the dataclass the fields belong to (its values give the types).

    Returns:
        dict field -> value, for `dataclasses.replace(config, **overrides)`.

    Raises:
        ValueError: an item without "=", an unknown field (the valid ones named), a
            value of the wrong type (the field, the expected type and the value named),
            or a nested value its own checks refuse. One line.
    """
    changes = {}
    for item in items:
        name, sep, text = str(item).partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise ValueError(f"--set {item}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(field_names(config))}")
        path = name.split(".")
        current = dataclasses.replace(config, **changes) if changes else config
        try:
            changes.update(_set_path(current, path, text, ""))
        except _UnknownField as err:
            raise ValueError(f"--set {item}: {err.message}; valid: {', '.join(err.valid)}") \
                from None
        except _BadValue as err:
            raise ValueError(f"--set {item}: field {err.field} expects {err.expected}. "
                             f"Received: {_short(err.received)}") from None
        except (ValueError, TypeError) as err:  # a nested dataclass's own checks
            raise ValueError(f"--set {item}: {' '.join(str(err).split())}") from None
    return changes


def apply_overrides(config, items, replace=None):
    """`config` with the `--set FIELD=VALUE` items applied (see `parse_overrides`).

    Args:
        config: a config dataclass.
        items: iterable of "FIELD=VALUE" str.
        replace: callable (config, **changes) -> config, default `dataclasses.replace`
            (a paper whose fields depend on each other passes its own).
    """
    items = list(items)
    if not items:
        return config
    changes = parse_overrides(items, config)
    replace = dataclasses.replace if replace is None else replace
    try:
        return replace(config, **changes)
    except (ValueError, TypeError) as err:  # the config's own checks (__post_init__)
        raise ValueError(f"--set {' '.join(items)}: {' '.join(str(err).split())}") from None


# config.json ----------------------------------------------------------------------------

def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def load_record(path):
    """(path of the file, its JSON object) of a run's config.json, or of a run folder.

    Raises:
        ValueError: no such file, unreadable, not JSON or not a JSON object (one line
            naming the file).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"--config {path}: no such file (expected a run folder or its "
                         f"config.json)") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a config.json: not UTF-8 text (byte {err.start})") \
            from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err.msg} (line {err.lineno}, column "
                         f"{err.colno})") from None
    except RecursionError:
        raise ValueError(f"{path}: not a config.json: JSON nested too deeply") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a config.json: expected a JSON object. Received: "
                         f"{type(document).__name__}")
    return path, document


def _config_values(document: dict, template, record_keys=()) -> dict:
    """The config fields of a run record.

    Some papers write the config itself, others {"config": {...}, "seed": ..., ...};
    in the second form the record's top-level values of config fields win (bar-ad
    writes the frameworks it ran there). `record_keys` are the other top-level keys a
    paper writes beside its fields ("arms", "study" of lge-qa's limited study).
    """
    fields = {f.name for f in dataclasses.fields(template)}
    if "config" not in fields and isinstance(document.get("config"), dict):
        values = dict(document["config"])
        values.update({k: v for k, v in document.items() if k in fields})
        return values
    return {k: v for k, v in document.items() if k not in record_keys or k in fields}


def config_from_record(document: dict, template, source, record_keys=()):
    """A config dataclass from a run record: `template` (the preset) with the record's
    values, checked against each field's type.

    Args:
        document: dict, the JSON object of a run's config.json.
        template: the paper's config dataclass (a preset): its fields and types, and
            the value of any field the record lacks.
        source: str or Path, named in errors (the file).
        record_keys: top-level keys the paper's record holds besides its fields.

    Raises:
        ValueError: a field this paper's config does not have (a config.json of another
            paper), or a value of the wrong type. One line naming the file.
    """
    values = _config_values(document, template, record_keys)
    names = {f.name for f in dataclasses.fields(template)}
    unknown = sorted(k for k in values if k not in names)
    if unknown:
        raise ValueError(
            f"{source}: not a config.json of this paper's runs (a run of another paper?): "
            f"{type(template).__name__} has no field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown[:6])}{', ...' if len(unknown) > 6 else ''}; valid: "
            f"{', '.join(sorted(names))}")
    try:
        return _dataclass_from(values, template)
    except _BadValue as err:
        raise ValueError(f"{source}: field {err.field} expects {err.expected}. Received: "
                         f"{_short(err.received)}") from None
    except _UnknownField as err:
        raise ValueError(f"{source}: {err.message}; valid: {', '.join(err.valid)}") from None
    except (ValueError, TypeError) as err:  # the config's own checks (__post_init__)
        raise ValueError(f"{source}: {' '.join(str(err).split())}") from None


def read_config(path, template, record_keys=()):
    """A run's config.json (or run folder) read back into its config dataclass.

    Args:
        path: str or Path. The file, or the run folder holding it.
        template: the paper's config dataclass (a preset): fields the file lacks keep
            its values.
        record_keys: top-level keys the paper's record holds besides its fields.

    Returns:
        The config, equal to the one the run wrote.

    Raises:
        ValueError: see `load_record` and `config_from_record` (one line naming the file).
    """
    path, document = load_record(path)
    return config_from_record(document, template, path, record_keys)


# The `run` command ------------------------------------------------------------------------

CONFIG_HELP = ("re-run from a run folder: read its config.json (or the folder) back into "
               "this paper's config. The file wins: --preset only fills fields the file "
               "lacks (default: the preset the file names), and the run folder and study "
               "take the file's preset name; --set and this command's other options apply "
               "on top. The seed is --seed's")
SET_HELP = ("set a field of the config (repeatable), parsed against its type, after "
            "--preset / --config: --set epochs=3, --set flag=false, --set "
            "image_size=64,80 (a tuple), --set weights=none, --set "
            "group.field=0.2 (a nested field or a dict's key); an unknown field's error "
            "lists the valid ones (fields: <paper>/config.py)")


def add_config_args(parser) -> None:
    """Adds --config RUN_DIR/config.json and --set FIELD=VALUE (see `run_config`)."""
    parser.add_argument("--config", type=Path, default=None, metavar="RUN_DIR/config.json",
                        help=CONFIG_HELP)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help=SET_HELP)


def run_config(args, get_preset, *, preset_field="preset", record_keys=(), replace=None,
               overrides=None):
    """The config of a paper's `run`: the preset or `--config` file, then `--set`, then
    the command's own options (`overrides`).

    With `--config`, the file's values win over the preset's: the preset (`--preset`, or
    the one the file names when `--preset` is not given) fills only the fields the file
    lacks. `args.preset` becomes the config's preset name when that names a preset, so
    the run folder and the clean-tree check of a powered or paper study follow what runs.

    Args:
        args: argparse.Namespace of a command set up by `add_run_args` (`preset`,
            `config`, `set`; `preset_given` is True when --preset was on the line).
        get_preset: callable name -> config (the paper's `get_config` / `get_preset`).
        preset_field: str, default "preset". The config field naming its preset.
        record_keys: top-level keys of the paper's config.json besides its fields.
        replace: callable (config, **changes) -> config, default `dataclasses.replace`.
        overrides: dict, optional. Fields the command's own options set; applied last.

    Raises:
        ValueError: a bad file, field or value (one line; `medrepro` exits with 2).
    """
    replace = dataclasses.replace if replace is None else replace
    path = getattr(args, "config", None)
    if path is None:
        config = get_preset(args.preset)
    else:
        path, document = load_record(path)
        preset = args.preset
        if not getattr(args, "preset_given", False):
            named = _config_values(document, get_preset(args.preset), record_keys) \
                .get(preset_field)
            if isinstance(named, str) and _is_preset(get_preset, named):
                preset = named
        config = config_from_record(document, get_preset(preset), path, record_keys)
    config = apply_overrides(config, getattr(args, "set", None) or [], replace)
    if overrides:
        config = replace(config, **overrides)
    name = getattr(config, preset_field, None)
    if isinstance(name, str) and name != args.preset and _is_preset(get_preset, name):
        args.preset = name
    return config


def _is_preset(get_preset, name: str) -> bool:
    try:
        get_preset(name)
    except (ValueError, KeyError):
        return False
    return True
