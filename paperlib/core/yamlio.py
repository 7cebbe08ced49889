"""YAML as paperlib reads it: parameter, suite and reference files, and ``--set KEY=VALUE`` values.

A key written twice in one mapping is an error (PyYAML would keep the last value silently), and every error is
one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from paperlib.core.errors import PaperlibError
from paperlib.core.paths import how_absent

_MERGE = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key written twice in one mapping is an error: PyYAML would keep the
    last value and drop the first without a word (a run, an experiment or a setting lost). Checked as the
    file is read, before merge keys (``<<: *base``) are expanded, so a key a merge brings in may be overridden."""

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: set[tuple[str, str]] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE:
                if (key.tag, key.value) in seen:
                    raise yaml.composer.ComposerError(None, None, f"duplicate key {key.value!r}: keep one",
                                                      key.start_mark)
                seen.add((key.tag, key.value))
        return node

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """YAML 1.1 reads ``010`` as octal 8 and ``1:30`` as 90 (base 60): a zero-padded seed or a time-like
        value would run as another number without a word. Both are errors instead."""
        text = str(self.construct_scalar(node)).replace("_", "")
        digits = text.lstrip("+-")
        if ":" in digits or (len(digits) > 1 and digits[0] == "0" and digits[1].isdigit()):
            how, fix = ("base 60", "the colon") if ":" in digits else ("octal", "the leading zero")
            raise yaml.constructor.ConstructorError(
                None, None, f"{text} reads as {super().construct_yaml_int(node)} ({how}) in YAML; write it "
                f"without {fix}, or quote it as text", node.start_mark)
        return super().construct_yaml_int(node)


    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        """``1:30.5`` reads as 90.5 (base 60), as the integers above: an error instead."""
        if ":" in str(self.construct_scalar(node)):
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value} reads as {super().construct_yaml_float(node)} (base 60) in YAML; write it "
                "without the colon, or quote it as text", node.start_mark)
        return super().construct_yaml_float(node)


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_int)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _UniqueKeyLoader.construct_yaml_float)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` of ``text``, with a duplicate key in a mapping raising ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_error_text(err: yaml.YAMLError) -> str:
    """PyYAML's message (problem, line and column) on one line, with how to fix the usual causes."""
    text = " ".join(str(err).replace('"<unicode string>", ', "").split())
    mark = getattr(err, "problem_mark", None)
    line = f" {mark.line + 1}" if mark is not None else ""
    if "'\\t'" in text:
        return f"{text}; indent with spaces, not tabs"
    if "expected <block end>" in text or "mapping values are not allowed" in text:
        return f"{text}; check the indentation and the ': ' after each name on line{line} and the lines above it"
    if "expected ',' or ']'" in text or "expected ',' or '}'" in text:
        return f"{text}; close the bracket opened before line{line}"
    return text


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that holds a mapping (parameters, a suite, an experiment file, a profile's defaults)."""
    path = Path(path)
    if path.is_dir():
        raise PaperlibError(f"{path} is a folder; name a .yaml file in it")
    if not path.is_file():
        raise PaperlibError(f"{path} {how_absent(path)}; check the path")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise PaperlibError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); "
                            f"save it as UTF-8 YAML") from None
    except yaml.YAMLError as err:
        raise PaperlibError(f"{path} is not valid YAML: {yaml_error_text(err)}") from None
    if not isinstance(data, dict):
        raise PaperlibError(f"{path} must hold a mapping of name: value")
    return data


def split_set(assignments: list[str]) -> dict[str, str]:
    """Split ``KEY=VALUE`` strings, each value kept as typed (``false``, ``1e-3``: an error names it so)."""
    result: dict[str, str] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PaperlibError(f"--set expects KEY=VALUE, got {item!r}")
        if key in result:  # as a key twice in a YAML file: which one was meant is not for us to guess
            raise PaperlibError(f"--set {key} is given twice; keep one")
        result[key] = raw
    return result


def parse_set(assignments: list[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings; values are YAML scalars (``0.05``, ``1e-3``, ``true``, ``cmnist``)."""
    result: dict[str, Any] = {}
    for key, raw in split_set(assignments).items():
        try:
            result[key] = parse_yaml(raw) if raw.strip() else None
        except yaml.YAMLError:
            result[key] = raw
    return result


__all__ = ["load_yaml", "parse_set", "parse_yaml", "split_set", "yaml_error_text"]
