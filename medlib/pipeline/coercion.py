"""Check YAML values against declared type names (`int`, `list[str]`, `dict | str`, ...), naming where they fail."""
from __future__ import annotations

import ast
from typing import Any


class TypeMismatch(TypeError):
    """A value that does not fit a declared type; `where` locates it inside the value."""

    def __init__(self, expected: str, value: Any, where: str = "") -> None:
        super().__init__(f"expected {expected}, got {_type_name(value)} ({value!r})")
        self.where = where


def _type_name(value: Any) -> str:
    """YAML-minded name of a value's type."""
    return "null" if value is None else type(value).__name__


def coerce(value: Any, type_name: str) -> Any:
    """Check a value against a declared type name, converting int or numeric str to float."""
    if type_name in ("", "None"):
        return value
    try:
        annotation = ast.parse(type_name, mode="eval").body
    except SyntaxError:
        return value
    return _coerce(value, annotation, "")


_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}
_CONTAINERS = {"list": list, "List": list, "dict": dict, "Dict": dict}


def _annotation_name(node: ast.expr) -> str | None:
    """`Optional` for both `Optional` and `typing.Optional`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _alternatives(node: ast.expr) -> list[ast.expr] | None:
    """Members of `A | B` or `Union[A, B]`, or None for anything else."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return (_alternatives(node.left) or [node.left]) + (
            _alternatives(node.right) or [node.right]
        )
    if isinstance(node, ast.Subscript) and _annotation_name(node.value) == "Union":
        items = node.slice
        return list(items.elts) if isinstance(items, ast.Tuple) else [items]
    return None


def _is_none(node: ast.expr) -> bool:
    """Whether an annotation node is `None`."""
    return isinstance(node, ast.Constant) and node.value is None


def _coerce(value: Any, node: ast.expr, where: str) -> Any:
    """Recursive check of `value` against an annotation node."""
    expected = ast.unparse(node)
    if _is_none(node):
        if value is None:
            return None
        raise TypeMismatch("null", value, where)
    alternatives = _alternatives(node)
    if isinstance(node, ast.Subscript) and _annotation_name(node.value) == "Optional":
        alternatives = [node.slice, ast.Constant(None)]
    if alternatives is not None:
        if value is None and any(_is_none(option) for option in alternatives):
            return None
        options = [option for option in alternatives if not _is_none(option)]
        if len(options) == 1:
            return _coerce(value, options[0], where)
        for option in options:
            try:
                return _coerce(value, option, where)
            except TypeMismatch:
                continue
        raise TypeMismatch(expected, value, where)
    if isinstance(node, ast.Subscript):
        return _coerce_container(value, node, where)
    name = _annotation_name(node)
    if name in _SCALARS:
        return _coerce_scalar(value, name, where)
    if name in _CONTAINERS:
        if isinstance(value, _CONTAINERS[name]):
            return value
        raise TypeMismatch(expected, value, where)
    # Types we cannot check from YAML (Any, Path, ...) pass through unchanged.
    return value


def _coerce_scalar(value: Any, name: str, where: str) -> Any:
    """int, float, str or bool, where bool is never a number and 1e-4 may come as a string."""
    if name == "bool" or isinstance(value, bool):
        if name == "bool" and isinstance(value, bool):
            return value
        raise TypeMismatch(name, value, where)
    if name == "int" and isinstance(value, int):
        return value
    if name == "float":
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads `1e-4` without a dot as a string.
            try:
                return float(value)
            except ValueError:
                pass
    if name == "str" and isinstance(value, str):
        return value
    raise TypeMismatch(name, value, where)


def _coerce_container(value: Any, node: ast.Subscript, where: str) -> Any:
    """`list[X]` / `dict[K, V]` checked element by element; other generics pass through."""
    name = _annotation_name(node.value)
    if name not in _CONTAINERS:
        return value
    if not isinstance(value, _CONTAINERS[name]):
        raise TypeMismatch(ast.unparse(node), value, where)
    items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if isinstance(value, list):
        return [_coerce(item, items[0], f"{where}[{index}]") for index, item in enumerate(value)]
    if len(items) != 2:
        return value
    return {
        _coerce(key, items[0], f"{where}.{key}"): _coerce(item, items[1], f"{where}.{key}")
        for key, item in value.items()
    }
