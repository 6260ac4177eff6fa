"""Choosing store rows for a report: `where` filters, grouping and pairing by a field.

`select_values` groups the evaluations of one metric by a field (`group`, `split`,
`model_id` or a key of `extra`), optionally filtered by a `where` expression such as
`"val_accuracy > 0.95 and split == 'test'"` (grammar in `WhereExpression`).
`select_paired` also matches the groups' values by a pairing unit (`trial_index`,
`seed`, `fold`), for the paired tests.
"""

from __future__ import annotations

import logging
import math
import re

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op>==|!=|<=|>=|<|>|=)
    | (?P<paren>[()])
    | (?P<quoted>`[^`]+`)
    | (?P<name>[A-Za-z_][A-Za-z0-9_.@/-]*)
    )""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "true", "false", "null", "none"}
_OPS = {"==": lambda a, b: a == b, "=": lambda a, b: a == b, "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


MAX_DEPTH = 32
MAX_LENGTH = 10_000


def _shown(text, limit=60) -> str:
    """The expression for an error message, cut to `limit` characters."""
    text = str(text)
    return repr(text if len(text) <= limit else text[:limit] + "...")


class WhereExpression:
    """A parsed `where` filter; call it with a name resolver to evaluate it.

    Grammar (keywords case-insensitive)::

        expr       := and_expr ("or" and_expr)*
        and_expr   := not_expr ("and" not_expr)*
        not_expr   := "not" not_expr | "(" expr ")" | comparison
        comparison := operand OP operand        OP: == = != < <= > >=
        operand    := NAME | `quoted name` | NUMBER | 'string' | "string" | true | false | null

    Names refer to fields of the row (`value`, `group`, `split`, `model_id`),
    keys of its `extra` JSON (also as `extra.KEY`), or other metrics of the same
    model. Numbers compare numerically, strings as text (a number compared with a
    string is compared as text); a missing value equals only `null`, and any
    other comparison with it is false. Nothing is ever passed to `eval` or into SQL.
    Chains of `and` / `or` may be as long as `MAX_LENGTH` characters allow; brackets
    and `not` nest at most `MAX_DEPTH` deep. Error messages quote at most the first 60
    characters of the expression.
    """

    def __init__(self, text: str):
        if isinstance(text, str) and len(text) > MAX_LENGTH:
            raise ValueError(f"where {_shown(text)}: expression of {len(text)} characters; "
                             f"expected at most {MAX_LENGTH}")
        self.text = text
        self._tokens = self._tokenise(text)
        self._pos = 0
        self._depth = 0
        self.tree = self._expr()
        if self._pos != len(self._tokens):
            kind, value, offset = self._tokens[self._pos]
            raise ValueError(f"where {_shown(text)}: unexpected {value!r} at character {offset}")
        self.names = sorted(self._collect_names(self.tree))

    @staticmethod
    def _tokenise(text):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"where: expected a non-empty expression, got {text!r}")
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                bad = text[pos:].lstrip()[:1]
                raise ValueError(f"where {_shown(text)}: unexpected character {bad!r} at "
                                 f"character {len(text) - len(text[pos:].lstrip())}")
            kind = match.lastgroup
            value = match.group(kind)
            offset = match.start(kind)
            if kind == "name" and value.lower() in _KEYWORDS:
                kind = "keyword"
                value = value.lower()
            tokens.append((kind, value, offset))
            pos = match.end()
        return tokens

    def _peek(self):
        return self._tokens[self._pos] if self._pos < len(self._tokens) else (None, None, None)

    def _take(self):
        token = self._peek()
        if token[0] is None:
            raise ValueError(f"where {_shown(self.text)}: unexpected end of expression")
        self._pos += 1
        return token

    def _chain(self, keyword, parse_operand):
        """`a KEYWORD b KEYWORD c ...` as one n-ary node, so long chains stay shallow."""
        children = [parse_operand()]
        while self._peek()[:2] == ("keyword", keyword):
            self._take()
            children.append(parse_operand())
        return children[0] if len(children) == 1 else (keyword, *children)

    def _expr(self):
        return self._chain("or", self._and)

    def _and(self):
        return self._chain("and", self._not)

    def _nested(self, offset):
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ValueError(f"where {_shown(self.text)}: brackets and 'not' nest deeper than "
                             f"{MAX_DEPTH} levels at character {offset}")

    def _not(self):
        kind, value, offset = self._peek()
        if (kind, value) == ("keyword", "not"):
            self._take()
            self._nested(offset)
            node = ("not", self._not())
            self._depth -= 1
            return node
        if (kind, value) == ("paren", "("):
            self._take()
            self._nested(offset)
            node = self._expr()
            kind, value, offset = self._take()
            if (kind, value) != ("paren", ")"):
                raise ValueError(f"where {_shown(self.text)}: expected ')' at character {offset}")
            self._depth -= 1
            return node
        left = self._operand()
        kind, op, offset = self._take()
        if kind != "op":
            raise ValueError(f"where {_shown(self.text)}: expected a comparison operator "
                             f"(== != < <= > >=) at character {offset}, got {op!r}")
        right = self._operand()
        return ("cmp", op, left, right)

    def _operand(self):
        kind, value, offset = self._take()
        if kind == "number":
            return ("const", float(value))
        if kind == "string":
            return ("const", re.sub(r"\\(.)", r"\1", value[1:-1]))
        if kind == "quoted":
            return ("name", value[1:-1])
        if kind == "name":
            return ("name", value)
        if kind == "keyword" and value in ("true", "false"):
            return ("const", value == "true")
        if kind == "keyword" and value in ("null", "none"):
            return ("const", None)
        raise ValueError(f"where {_shown(self.text)}: expected a name, number or string at "
                         f"character {offset}, got {value!r}")

    def _collect_names(self, node):
        if node[0] == "name":
            return {node[1]}
        if node[0] == "const":
            return set()
        if node[0] == "cmp":
            return self._collect_names(node[2]) | self._collect_names(node[3])
        return set().union(*(self._collect_names(n) for n in node[1:]))

    def evaluate(self, resolve) -> bool:
        """Evaluates the expression; `resolve(name)` returns the value or None."""
        return bool(self._eval(self.tree, resolve))

    def _eval(self, node, resolve):
        tag = node[0]
        if tag == "or":
            return any(self._eval(child, resolve) for child in node[1:])
        if tag == "and":
            return all(self._eval(child, resolve) for child in node[1:])
        if tag == "not":
            return not self._eval(node[1], resolve)
        if tag == "cmp":
            a = self._value(node[2], resolve)
            b = self._value(node[3], resolve)
            if a is None or b is None:
                if node[1] in ("==", "="):
                    return a is None and b is None
                return node[1] == "!=" and (a is None) != (b is None)
            a, b = _coerce(a, b)
            if a is None:
                return False
            try:
                return _OPS[node[1]](a, b)
            except TypeError:
                return False
        raise AssertionError(tag)  # pragma: no cover

    @staticmethod
    def _value(node, resolve):
        return node[1] if node[0] == "const" else resolve(node[1])


def _coerce(a, b):
    """Numbers compare as floats, booleans as booleans, anything else as strings."""
    if isinstance(a, bool) or isinstance(b, bool):
        return (a, b) if isinstance(a, bool) and isinstance(b, bool) else (None, None)
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na, nb
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    if na is not None and isinstance(b, str) or nb is not None and isinstance(a, str):
        return str(a if na is None else _fmt_num(na)), str(b if nb is None else _fmt_num(nb))
    return None, None


def _number(x):
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    return None


def _fmt_num(x):
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def parse_where(text: str) -> WhereExpression:
    """Parses a `where` filter (see `WhereExpression` for the grammar)."""
    return WhereExpression(text)


ROW_FIELDS = ("value", "group", "split", "model_id", "metric")


def _row_field(row, name):
    """A row's field / extra key (`extra.KEY` or `KEY`); (found, value)."""
    if name in ROW_FIELDS:
        return True, row.get(name)
    extra = row.get("extra") or {}
    key = name[len("extra."):] if name.startswith("extra.") else name
    if isinstance(extra, dict) and key in extra:
        return True, extra[key]
    return False, None


def _selected_rows(rows, metric, *, where=None, split=None):
    """The rows of `metric` (of `split`) with a finite value that pass `where`."""
    expression = parse_where(where) if isinstance(where, str) else where
    by_model = {}
    for row in rows:
        by_model.setdefault(row["model_id"], []).append(row)
    candidates = [r for r in rows if r["metric"] == metric
                  and (split is None or r["split"] == split)]
    if not candidates:
        known = sorted({r["metric"] for r in rows})
        raise ValueError(f"metric {metric!r}: no evaluations"
                         + (f" in split {split!r}" if split is not None else "")
                         + f"; metrics present: {known}")
    if expression is not None:
        metrics_present = {r["metric"] for r in rows}
        for name in expression.names:
            if name in ROW_FIELDS or name in metrics_present:
                continue
            if not any(_row_field(r, name)[0] for r in rows):
                raise ValueError(
                    f"where: unknown name {name!r}; expected a field {list(ROW_FIELDS)}, a key "
                    f"of extra, or a metric of this experiment {sorted(metrics_present)}")

    def resolver(row):
        def resolve(name):
            found, value = _row_field(row, name)
            if found:
                return value
            others = [r for r in by_model.get(row["model_id"], []) if r["metric"] == name]
            same_split = [r for r in others if r["split"] == row["split"]]
            if same_split:
                return same_split[0]["value"]
            return others[0]["value"] if len(others) == 1 else None
        return resolve

    selected, missing = [], []
    for row in candidates:
        if row["value"] is None or not math.isfinite(row["value"]):
            missing.append(row["model_id"])
            continue
        if expression is not None and not expression.evaluate(resolver(row)):
            continue
        selected.append(row)
    if missing:
        # A model that diverged is stored without a value (NaN / Inf become null): say
        # so, instead of letting it drop out of the comparison unnoticed.
        logging.getLogger(__name__).warning(
            "metric %r: %d model(s) have no value (NaN or Inf when recorded, e.g. a "
            "diverged model) and are left out: %s", metric, len(missing),
            ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else ""))
    return candidates, selected


def _group_key(row, by):
    found, key = _row_field(row, by)
    if not found:
        raise ValueError(f"by: model {row['model_id']!r} has no field {by!r}; expected one "
                         f"of {list(ROW_FIELDS)} or a key of its extra "
                         f"{sorted((row.get('extra') or {}).keys())}")
    return "(none)" if key is None else str(key)


def select_values(rows, metric, *, by="group", where=None, split=None):
    """Groups the values of `metric` in evaluation rows by a field, after a filter.

    Args:
        rows: list of dicts as returned by `ResultsStore.evaluations(experiment)`
            (all metrics of the experiment, so that `where` can refer to them).
        metric: str. The metric compared.
        by: str. Field that defines the groups: `group`, `split`, `model_id` or a key
            of `extra`.
        where: str or WhereExpression, optional. Filter (see `WhereExpression`);
            names that are not row fields or extra keys are other metrics of the
            same model (same split preferred).
        split: str, optional. Only rows of this split.

    Returns:
        dict group value -> list of floats (groups in order of first appearance,
        sorted by name), and the list of model ids used.
    """
    _, selected = _selected_rows(rows, metric, where=where, split=split)
    groups, models = {}, []
    for row in selected:
        groups.setdefault(_group_key(row, by), []).append(float(row["value"]))
        models.append(row["model_id"])
    return dict(sorted(groups.items())), models


def pair_fields(pair_by) -> list:
    """The fields of a `pair_by` value: "trial_index" or "run,trial_index"."""
    fields = [f.strip() for f in str(pair_by).split(",")] if pair_by is not None else []
    if not fields or not all(fields):
        raise ValueError(f"pair-by: expected a field, or fields separated by commas (e.g. "
                         f"trial_index or run,trial_index), got {pair_by!r}")
    return fields


def _unit_order(label_values):
    """Numbers in numeric order before text, text in text order, per field."""
    return tuple((0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool)
                 else (1, 0.0, str(v)) for v in label_values)


def select_paired(rows, metric, *, pair_by, by="group", where=None, split=None) -> dict:
    """The values of `metric` per group, matched across groups by a pairing unit.

    The unit is the value of `pair_by` (or the values of several comma-separated
    fields, e.g. `"run,trial_index"` when one store holds several runs) in each row:
    a key of `extra` (`trial_index`, `seed`, `fold`, ...) or a row field. Units that
    not every group has are dropped and listed.

    Args:
        rows: list of dicts as returned by `ResultsStore.evaluations(experiment)`.
        metric: str. The metric compared.
        pair_by: str. Field(s) naming the unit each value was measured on.
        by: str. Field that defines the groups (the arms). Defaults to "group".
        where: str or WhereExpression, optional. Filter (see `select_values`).
        split: str, optional. Only rows of this split.

    Returns:
        dict with `arms` (group -> list of floats, one per complete unit, all in the
        order of `units`; groups sorted by name), `units` (labels of the complete
        units), `dropped` (list of {"unit", "groups"}: units only some groups have,
        and the groups that have them), `pair_by` (list of fields) and `models`
        (model ids of the values kept).

    Raises:
        ValueError: no row of the metric has a `pair_by` field (naming the fields the
            rows have), a row lacks it, one group holds two models of one unit, or
            `pair_by` is the grouping field.
    """
    fields = pair_fields(pair_by)
    if by in fields:
        raise ValueError(f"pair-by {pair_by!r}: the groups are defined by {by!r}, so no unit "
                         f"can be in two groups; expected the field that names the unit each "
                         f"model was measured on (e.g. trial_index, seed, fold)")
    candidates, selected = _selected_rows(rows, metric, where=where, split=split)
    for field in fields:
        if not any(_row_field(r, field)[0] for r in candidates):
            keys = sorted({k for r in candidates for k in (r.get("extra") or {})})
            raise ValueError(f"pair-by: unknown field {field!r}; expected a row field "
                             f"{list(ROW_FIELDS)} or a key of the extra of metric "
                             f"{metric!r}: {keys}")
    values, models, order = {}, {}, {}
    for row in selected:
        found = [_row_field(row, field) for field in fields]
        if not all(f for f, _ in found):
            missing = [field for field, (f, _) in zip(fields, found) if not f]
            raise ValueError(f"pair-by: model {row['model_id']!r} has no field "
                             f"{missing[0]!r}; expected every model of metric {metric!r} to "
                             f"name its unit (its extra: "
                             f"{sorted((row.get('extra') or {}).keys())})")
        unit_values = tuple(v for _, v in found)
        unit = " / ".join("(none)" if v is None else str(v) for v in unit_values)
        order.setdefault(unit, _unit_order(unit_values))
        group = _group_key(row, by)
        if unit in values.setdefault(group, {}):
            raise ValueError(
                f"pair-by {pair_by!r}: group {group!r} has two models of unit {unit} "
                f"({models[group][unit]!r} and {row['model_id']!r}); expected one per unit: "
                f"add the field that tells them apart (e.g. --pair-by run,{fields[-1]}) or "
                f"narrow with --where")
        values[group][unit] = float(row["value"])
        models.setdefault(group, {})[unit] = row["model_id"]
    groups = sorted(values)
    units = sorted(order, key=order.get)
    complete = [u for u in units if all(u in values[g] for g in groups)]
    dropped = [{"unit": u, "groups": [g for g in groups if u in values[g]]}
               for u in units if u not in complete]
    return {"arms": {g: [values[g][u] for u in complete] for g in groups},
            "units": complete, "dropped": dropped, "pair_by": fields,
            "models": [models[g][u] for g in groups for u in complete]}


# --------------------------------------------------------------------------- figures
