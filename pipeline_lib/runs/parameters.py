"""Typed notebook parameters: what a notebook's `parameters` cell declares, and the `-p NAME VALUE`
values of `workbench run` (and of a schedule line) checked against it before any kernel starts.

The convention, in the cell tagged `parameters` (plain Python, so papermill injects after it):

    seed: int = 1  # 0..2_147_483_647: folds, permutations and samples
    k_min_group: int | None = None  # 1..: default WORKBENCH_K_MIN_GROUP
    spark_master: str | None = None  # default: WORKBENCH_SPARK_MASTER
    dry_run: bool = False  # True: clean and report, commit nothing

- The annotation is the type: `int`, `float`, `bool` or `str`, with `| None` when none is allowed
  (usually "take it from the settings"). From `-p`: `none`/`null` is None, `true`/`false` a
  bool, an int is accepted for a float (never a bool for an int or a float), text is kept as
  typed for a str.
- A trailing comment that starts with `LOW..HIGH` is the range of an int or float, both ends
  included, either end left out for no bound (`1..`, `..100`, `-5..5`, `0.0..1.0`); what follows
  it (after `:`) is the help. A float must be finite.
- A trailing comment that starts with `a|b|c` lists the only values a str parameter takes
  (`engine: str = "auto"  # auto|spark|pandas: which engine cleans`).
- The default must fit its type and range (when it is a literal). A cell that breaks these rules
  is an error naming the notebook and line, so a run refuses it rather than guess.
- An unannotated parameter is not checked: it gets what papermill's reading of `-p` gives.

The cell is read with `ast` and `tokenize`, not papermill's `inspect_notebook`: papermill's
pattern leaves out a line annotated `int | None`, and one with `=` in its comment.
"""

from __future__ import annotations

import ast
import io
import math
import re
import tokenize
import types
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nbformat

KINDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text"}
NONE_WORDS = ("none", "null")

_NUMBER = r"[-+]?\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^(?P<low>{_NUMBER})?\.\.(?P<high>{_NUMBER})?(?=[\s:]|$)\s*:?\s*")
_CHOICES = re.compile(r"^(?P<choices>[\w.-]+(?:\|[\w.-]+)+)(?=[\s:]|$)\s*:?\s*")


class ParameterError(ValueError):
    """A run refused before its kernel starts; the message is one line a person can act on."""


# Set by the run itself: a notebook's results and the freshness of the figures name the run's record.
RESERVED = frozenset({"run_id"})


class UnknownParameter(ParameterError):
    pass


class InvalidParameter(ParameterError):
    pass


class ParametersCellError(ParameterError):
    """The notebook's parameters cell does not follow the convention above."""


# The run errors that are the caller's (or the cell's) to fix: `workbench run` exits with 2.
USAGE_ERRORS = frozenset(cls.__name__ for cls in (UnknownParameter, InvalidParameter, ParametersCellError))


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str | None  # one of KINDS; None: unannotated, not checked
    optional: bool = False
    low: int | float | None = None
    high: int | float | None = None
    help: str = ""
    line: int = 0  # in the cell, from 1
    choices: tuple[str, ...] = ()  # a str parameter's only values, when listed

    @property
    def expected(self) -> str:
        """What a value must be, in words: 'an integer from 1 to 10_000', 'text, or none'."""
        if self.kind is None:
            return "anything"
        if self.choices:
            return "one of " + ", ".join(self.choices) + (", or none" if self.optional else "")
        words = KINDS[self.kind]
        if self.low is not None and self.high is not None:
            words += f" from {_number(self.low)} to {_number(self.high)}"
        elif self.low is not None:
            words += f" of at least {_number(self.low)}"
        elif self.high is not None:
            words += f" of at most {_number(self.high)}"
        return words + (", or none" if self.optional else "")


def parse_value(text: str) -> Any:
    """A `-p NAME VALUE` value as papermill's CLI reads it: bool, None, int, float, else text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in NONE_WORDS:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def parse_cell(source: str, where: str = "the parameters cell") -> dict[str, Parameter]:
    """The parameters a cell's source declares, by name (a later assignment wins, as in Python)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParametersCellError(f"{where}, line {exc.lineno}: not valid Python ({exc.msg})") from None
    comments = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    declared: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            declared.update({name: Parameter(name, None, line=node.lineno) for name in names})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            at = f"{where}, line {node.lineno}"
            # The comment on the definition's last line, as papermill reads a help text.
            comment = comments.get(node.end_lineno or node.lineno, "")
            parameter = replace(_declared(node.target.id, node.annotation, comment, at), line=node.lineno)
            if node.value is not None:
                _check_default(parameter, node.value, at)
            declared[parameter.name] = parameter
    return declared


def _declared(name: str, annotation: ast.expr, comment: str, at: str) -> Parameter:
    kind, optional = _kind(annotation)
    if kind is None:
        raise ParametersCellError(
            f"{at}: {name}: {ast.unparse(annotation)} is not a parameter type "
            "(int, float, bool or str, with `| None` when none is allowed)"
        )
    listed = _CHOICES.match(comment)
    if listed and kind == "str":
        return Parameter(
            name, kind, optional, help=comment[listed.end() :], choices=tuple(listed["choices"].split("|"))
        )
    match = _RANGE.match(comment)
    if not match:
        return Parameter(name, kind, optional, help=comment)
    if kind not in ("int", "float"):
        raise ParametersCellError(f"{at}: {name}: only an int or float parameter has a range ({kind})")
    bounds = [_bound(match[end], kind, name, at) for end in ("low", "high")]
    if bounds == [None, None]:
        raise ParametersCellError(
            f"{at}: {name}: a range needs at least one end (LOW..HIGH, LOW.. or ..HIGH)"
        )
    low, high = bounds
    if low is not None and high is not None and low > high:
        raise ParametersCellError(f"{at}: {name}: empty range {match[0].strip(' :')}")
    return Parameter(name, kind, optional, low, high, help=comment[match.end() :])


def _kind(annotation: ast.expr) -> tuple[str | None, bool]:
    """(kind, optional) of `int`, `int | None` or `None | int`; (None, False) for anything else."""
    if isinstance(annotation, ast.Name) and annotation.id in KINDS:
        return annotation.id, False
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        sides = [annotation.left, annotation.right]
        nones = [s for s in sides if isinstance(s, ast.Constant) and s.value is None]
        kinds = [s.id for s in sides if isinstance(s, ast.Name) and s.id in KINDS]
        if len(nones) == 1 and len(kinds) == 1:
            return kinds[0], True
    return None, False


def _bound(text: str | None, kind: str, name: str, at: str) -> int | float | None:
    if text is None:
        return None
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise ParametersCellError(
            f"{at}: {name}: the bound {text} of an int parameter is not an integer"
        ) from None


def _check_default(parameter: Parameter, value: ast.expr, at: str) -> None:
    try:
        default = ast.literal_eval(value)
    except (ValueError, TypeError):
        return  # an expression (`2**20`, a call): Python will say if it is wrong
    problem = _problem(parameter, default)
    if problem:
        raise ParametersCellError(f"{at}: the default of {parameter.name} {problem}")


def _problem(parameter: Parameter, value: Any) -> str | None:
    """Why `value` does not fit the parameter ('must be an integer, got 'abc''), or None."""
    if parameter.kind is None or (value is None and parameter.optional):
        return None
    kind = parameter.kind
    fits = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[kind]
    if fits and kind == "float" and not math.isfinite(value):
        fits = False
    if fits and parameter.choices:
        fits = value in parameter.choices
    if fits and kind in ("int", "float"):
        fits = (parameter.low is None or value >= parameter.low) and (
            parameter.high is None or value <= parameter.high
        )
    return None if fits else f"must be {parameter.expected}, got {_shown(value)}"


def check(notebook: str, parameter: Parameter, value: Any) -> Any:
    """`value` as the notebook gets it (an int becomes a float for a float parameter), or
    InvalidParameter naming the parameter, the notebook and what is expected."""
    problem = _problem(parameter, value)
    if problem:
        raise InvalidParameter(f"parameter {parameter.name} of {notebook} {problem}")
    if parameter.kind == "float" and value is not None:
        return float(value)
    return value


def from_text(notebook: str, parameter: Parameter, text: str) -> Any:
    """A `-p` value read for its declared type: text stays text for a str parameter."""
    if parameter.kind == "str" and not (parameter.optional and text.strip().lower() in NONE_WORDS):
        return check(notebook, parameter, text)
    return check(notebook, parameter, parse_value(text))


def resolve(declared: Mapping[str, Mapping[str, Parameter]], texts: Mapping[str, str]) -> dict[str, Any]:
    """The `-p` texts read and checked for the notebooks a run executes (`declared`: each one's
    parameters, by notebook). A name must be declared by at least one; every notebook that
    declares it must accept its value."""
    _refuse_reserved(texts)
    known = sorted({name for parameters in declared.values() for name in parameters})
    unknown = [name for name in texts if name not in known]
    if unknown:
        notebooks = " and ".join(declared)
        whose = "its" if len(declared) == 1 else "their"
        raise UnknownParameter(
            f"{notebooks} {'has' if len(declared) == 1 else 'have'} no parameter {', '.join(unknown)} "
            f"({whose} parameters: {', '.join(known) or 'none'})"
        )
    values: dict[str, Any] = {}
    for name, text in texts.items():
        for notebook, parameters in declared.items():
            if name in parameters:
                value = from_text(notebook, parameters[name], text)
                values.setdefault(name, value)
    return values


def validate(notebook: str, declared: Mapping[str, Parameter], values: Mapping[str, Any]) -> dict[str, Any]:
    """Already-read values (a caller of the executor) checked against one notebook's parameters."""
    _refuse_reserved(values)
    unknown = [name for name in values if name not in declared]
    if unknown:
        raise UnknownParameter(
            f"{notebook} has no parameter {', '.join(unknown)} "
            f"(its parameters: {', '.join(sorted(declared)) or 'none'})"
        )
    return {name: check(notebook, declared[name], value) for name, value in values.items()}


def check_namespace(namespace: Mapping[str, Any]) -> None:
    """A notebook's parameters checked in its kernel, against the types its cells annotated them
    with (`namespace` is the kernel's globals, after papermill's injected cell): papermill run
    directly reads `-p dry_run false` as the text 'false', which a bool parameter would take as
    true. InvalidParameter names the parameter, what it must be and how papermill passes that.
    Types only: `workbench run` checks ranges and choices before the kernel starts."""
    for name, annotation in _annotations(namespace).items():
        kind, optional = _runtime_kind(annotation)
        if kind is None or name not in namespace:
            continue
        value = namespace[name]
        problem = _problem(Parameter(name, kind, optional), value)
        if problem:
            raise InvalidParameter(
                f"parameter {name} {problem}{_papermill_hint(name, kind, optional, value)}"
            )


def _annotations(namespace: Mapping[str, Any]) -> dict[str, Any]:
    annotations = namespace.get("__annotations__")
    if annotations is None and callable(annotate := namespace.get("__annotate__")):
        try:  # Python 3.14 evaluates a module's annotations when asked
            annotations = annotate(1)
        except Exception:
            annotations = None
    return dict(annotations or {})


def _papermill_hint(name: str, kind: str, optional: bool, value: Any) -> str:
    """How papermill's `-p` passes what was meant: it reads True, False and None only so spelled,
    and text that looks like a number as a number (`-r` passes text as it is)."""
    if isinstance(value, str) and kind == "bool" and value.strip().lower() in ("true", "false"):
        return f" (papermill reads only True and False as booleans: -p {name} {value.strip().capitalize()})"
    if isinstance(value, str) and optional and value.strip().lower() in NONE_WORDS:
        return f" (papermill reads only None as none: -p {name} None)"
    if kind == "str" and isinstance(value, int | float):
        return f" (papermill reads a number as a number: -r {name} {value} passes it as text)"
    return ""


_RUNTIME_KINDS = {int: "int", float: "float", bool: "bool", str: "str"}


def _runtime_kind(annotation: object) -> tuple[str | None, bool]:
    """(kind, optional) of an evaluated annotation (`int`, `int | None`), or of its text."""
    if isinstance(annotation, str):
        try:
            return _kind(ast.parse(annotation, mode="eval").body)
        except SyntaxError:
            return None, False
    if isinstance(annotation, type):
        return _RUNTIME_KINDS.get(annotation), False
    if isinstance(annotation, types.UnionType):
        others = [t for t in annotation.__args__ if t is not type(None)]
        if len(others) == 1 and len(annotation.__args__) == 2 and others[0] in _RUNTIME_KINDS:
            return _RUNTIME_KINDS[others[0]], True
    return None, False


def _refuse_reserved(names: Mapping[str, object]) -> None:
    if reserved := sorted(RESERVED & set(names)):
        raise InvalidParameter(
            f"{', '.join(reserved)} is set by the run itself (the id of its record, which the results "
            "and their freshness name): it cannot be given"
        )


def read_notebook(path: Path) -> dict[str, Parameter]:
    """The parameters of the notebook at `path` (none if it has no cell tagged `parameters`)."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return parse_cell(cell.source, f"{path.name}, parameters cell")
    return {}


def _number(value: int | float) -> str:
    return f"{value:_}" if isinstance(value, int) else repr(value)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return repr(value)
