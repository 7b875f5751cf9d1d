"""One line per user mistake: config files read before parsing, and jsonargparse's errors condensed.

jsonargparse reports a bad option as a tree of alternatives (every Union subtype, every class path
it tried). :func:`explain_parse_error` walks that tree to the branch the user meant and says, in
one line, the option path and either the closest valid names (unknown option) or the value and the
expected type (wrong type). :func:`check_config_files` reads each ``--config`` file first, so a YAML
syntax error names the file, line and column, and an empty file says so.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from modules.errors import ConfigError

_UNION = "Does not validate against any of the Union subtypes"


# ---------------------------------------------------------------------------------------- config files
def config_file_args(args: Sequence[str]) -> list[str]:
    """The values given to ``-c``/``--config`` in ``args``, in order."""
    found = []
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith("--config="):
            found.append(arg.split("=", 1)[1])
    return found


def check_config_files(args: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for a ``--config`` file that is empty, not YAML, or not a mapping.

    A value that is no file is left to jsonargparse (it reports a missing file, and also accepts a
    YAML string in place of a path).
    """
    for value in config_file_args(args):
        path = Path(value)
        if not path.is_file():
            if path.suffix in (".yaml", ".yml", ".json"):  # else maybe YAML text, which --config accepts
                raise ConfigError(f"--config: no such file {value}")
            continue
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            where = f"{value}:{mark.line + 1}:{mark.column + 1}" if mark else value
            problem = err.problem or err.context or "invalid YAML"
            context = ""
            if err.context and err.context_mark and err.problem:
                context = f" ({err.context} at line {err.context_mark.line + 1}, column {err.context_mark.column + 1})"
            raise ConfigError(f"{where}: YAML syntax error: {problem}{context}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{value}: YAML error: {_one_line(str(err))}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{value}: cannot read: {err}") from None
        if data is None:
            raise ConfigError(f"{value} is empty")
        if not isinstance(data, dict):
            raise ConfigError(
                f"{value}: expected a mapping of options (trainer:, model:, data:, ...), "
                f"got a {type(data).__name__}"
            )


# ---------------------------------------------------------------------------------------- parse errors
@dataclass
class _Node:
    text: str
    indent: int
    children: list[_Node] = field(default_factory=list)


def _tree(message: str) -> list[_Node]:
    """jsonargparse's indented message as a tree; a ``- `` bullet is a node whose continuation lines
    (indented further) are its children."""
    root = _Node("", -1)
    stack = [root]
    for line in message.splitlines():
        text = line.strip()
        if not text:
            continue
        indent = len(line) - len(line.lstrip())
        if text.startswith("- "):
            text = text[2:].strip()
        while stack[-1].indent >= indent:
            stack.pop()
        node = _Node(text, indent)
        stack[-1].children.append(node)
        stack.append(node)
    return root.children


@dataclass
class _Path:
    """An option path as the user writes it: ``data.init_args.num_episodes``,
    ``model.init_args.policy.lora_r``, ``trainer.callbacks[TournamentCallback].init_args.num_games``."""

    parts: tuple[str, ...] = ()
    class_path: str | None = None  # the class whose init_args the path is in, if any

    def key(self, key: str) -> _Path:
        return _Path((*self.parts, *key.split(".")), None)

    def into_class(self, class_path: str, listed: bool) -> _Path:
        parts = self.parts
        if listed and parts:
            parts = (*parts[:-1], f"{parts[-1]}[{class_path.rsplit('.', 1)[-1]}]", "init_args")
        elif len(parts) == 1:  # a top-level class option (model, data): its arguments are init_args
            parts = (*parts, "init_args")
        return _Path(parts, class_path)

    def __str__(self) -> str:
        return ".".join(self.parts)


def explain_parse_error(err: BaseException, parser: argparse.ArgumentParser | None = None) -> str:
    """One line for jsonargparse's error ``err``; ``parser`` (the subcommand's) gives the valid
    top-level option names for suggestions."""
    message = str(err)
    nodes = _tree(message)
    found = _explain(nodes, _Path()) if nodes else None
    if found:
        return found
    first = nodes[0].text if nodes else ""
    m = re.match(r"Subcommand '[^']+' does not accept option '([^']+)'", first) or re.match(
        r"unrecognized arguments: -*([^\s=]+)", first
    )
    if m:
        return _unknown_top_level(m.group(1), parser)
    if first.startswith("Unexpected config:"):
        return "the configuration is not a mapping of options (trainer:, model:, data:, ...)"
    if first.startswith("Problems parsing config:"):
        return f"YAML syntax error: {_one_line(message.split(':', 1)[1])}"
    return _one_line(message)


def _explain(nodes: list[_Node], path: _Path, listed: bool = False) -> str | None:
    texts = [n.text for n in nodes]
    if _UNION in texts:
        return _explain_union(nodes, path)
    for node in nodes:
        text = node.text
        m = re.match(r'Parser key "([^"]+)":\s*(.*)$', text)
        if m:
            sub = path.key(m.group(1))
            if m.group(2):
                return f"{sub}: {m.group(2)}"
            return _explain(node.children, sub) or _leaf(node.children, sub)
        m = re.match(r"Problem with given class_path '([^']+)':\s*(.*)$", text)
        if m:
            class_path = m.group(1)
            missing = re.match(r"module '([^']+)' has no attribute '([^']+)'", m.group(2) or _first(node.children))
            if missing:
                return _unknown_class(path, class_path, missing.group(1), missing.group(2))
            sub = path.into_class(class_path, listed)
            if m.group(2):
                return f"{sub}: {m.group(2)}"
            return _explain(node.children, sub) or _leaf(node.children, sub)
        m = re.match(r"Option '([^']+)' is not accepted", text)
        if m:
            return _unknown_option(path, m.group(1))
        m = re.match(r"Expected a (.+?)\. Got value: (.*)$", text)
        if m:
            return f"{path}: expected {_type_names([m.group(1)])}, got {m.group(2)!r}"
    return None


def _explain_union(nodes: list[_Node], path: _Path) -> str:
    subtypes = _after(nodes, "Subtypes:")
    value = _after(nodes, "Given value:")
    value_type = _after(nodes, "Given value type:")
    errors = next((n.children for n in nodes if n.text == "Errors:"), [])
    listed = bool(subtypes and subtypes.lstrip("[").startswith("list["))
    # The user gave a class (a class_path or a dict of its arguments): the problem is inside it.
    for error in errors:
        if error.text.startswith("Problem with given class_path"):
            found = _explain([error], path, listed)
            if found:
                return found
    expected = _type_names(_split_top(subtypes.strip()[1:-1])) if subtypes else "another type"
    if value is None:
        return f"{path}: expected {expected}"
    shown = repr(value) if value_type in (None, "<class 'str'>") else value
    return f"{path}: expected {expected}, got {shown}"


def _unknown_option(path: _Path, name: str) -> str:
    choices = _class_options(path.class_path) if path.class_path else []
    return f"{path.key(name)}: unknown option{_suggest(name, choices)}"


def _unknown_class(path: _Path, class_path: str, module: str, name: str) -> str:
    try:
        names = [n for n in dir(importlib.import_module(module)) if n[:1].isupper()]
    except Exception:  # noqa: BLE001 - a suggestion is optional
        names = []
    return f"{path}: unknown class {class_path}{_suggest(name, names, prefix=module + '.')}"


def _unknown_top_level(key: str, parser: argparse.ArgumentParser | None) -> str:
    dests = _parser_options(parser)
    prefix, _, name = key.rpartition(".")
    groups = {d.rpartition(".")[0] for d in dests}
    if prefix in groups:
        siblings = [d.rpartition(".")[2] for d in dests if d.rpartition(".")[0] == prefix]
        return f"{key}: unknown option{_suggest(name, siblings)}"
    return f"{key}: unknown option{_suggest(key, dests, listing=False)}"


def _suggest(name: str, choices: Iterable[str], prefix: str = "", listing: bool = True) -> str:
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    if close:  # the best match, and others nearly as close
        best = difflib.SequenceMatcher(None, name, close[0]).ratio()
        close = [c for c in close if difflib.SequenceMatcher(None, name, c).ratio() >= best - 0.1]
        names = [prefix + c for c in close]
        said = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        return f"; did you mean {said}?"
    if listing and choices:
        return f"; valid: {', '.join(choices)}"
    return ""


def _class_options(class_path: str) -> list[str]:
    """The init arguments jsonargparse accepts for ``class_path`` (following ``**kwargs``)."""
    try:
        from jsonargparse import ArgumentParser

        module, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, fail_untyped=False)
    except Exception:  # noqa: BLE001 - a suggestion is optional
        return []
    return [d.split(".")[0] for d in _parser_options(parser)]


def _parser_options(parser: argparse.ArgumentParser | None) -> list[str]:
    if parser is None:
        return []
    skip = {"help", "config", "print_config"}
    return [
        a.dest
        for a in parser._actions
        if a.dest and a.dest != argparse.SUPPRESS and a.dest not in skip and not a.dest.endswith(".help")
    ]


def _type_names(types: list[str]) -> str:
    """``["<class 'int'>", "<class 'NoneType'>"]`` -> ``"int or None"``; Literals merge into ``one of ...``."""
    names, literals = [], []
    for t in types:
        t = re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], t.strip())
        t = re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", t)  # drop module paths
        t = "None" if t == "NoneType" else t
        m = re.fullmatch(r"Literal\[(.*)\]", t)
        if m:
            literals.extend(_split_top(m.group(1)))
        elif t not in names:
            names.append(t)
    if literals:
        names.insert(0, f"one of {', '.join(dict.fromkeys(literals))}")
    return " or ".join(names) if names else "another type"


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def _after(nodes: list[_Node], label: str) -> str | None:
    return next((n.text[len(label) :].strip() for n in nodes if n.text.startswith(label)), None)


def _first(nodes: list[_Node]) -> str:
    return nodes[0].text if nodes else ""


def _leaf(nodes: list[_Node], path: _Path) -> str | None:
    """The deepest first line under ``nodes``, as ``path: text``."""
    while nodes:
        if not nodes[0].children:
            return f"{path}: {nodes[0].text}"
        nodes = nodes[0].children
    return None


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())
