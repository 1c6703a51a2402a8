"""Read a plan file safely: a bounded regular file, YAML with alias and depth limits, strict $VARS.

The plan is input that someone inside the account may edit. Reading it must therefore finish
quickly and in bounded memory whatever the file holds:

* only a regular file is read (a FIFO, a device or a directory is refused from its ``stat``,
  before it is opened), and at most :data:`MAX_PLAN_BYTES` of it;
* the YAML event stream is checked before anything is built: nesting deeper than
  :data:`MAX_DEPTH`, more than :data:`MAX_ALIASES` aliases, or aliases that would expand to more
  than :data:`MAX_ALIAS_NODES` nodes (a "billion laughs" bomb) are refused without expanding them;
* duplicate mapping keys are refused (YAML would silently keep the last one);
* the C (libyaml) parser is used where PyYAML has it.

Problems are raised as :class:`PlanFileError` with a location (``(file)`` or ``line L, column
C``) and a message that never contains a value from the file beyond a bounded, redacted excerpt.
Nothing here imports Airflow or boto3.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from securedr.core.redaction import bounded, redact

MAX_PLAN_BYTES = 1024 * 1024
#: Collections nested deeper than this are refused; a plan needs about five levels.
MAX_DEPTH = 32
#: Alias uses (``*name``) in one plan.
MAX_ALIASES = 100
#: Nodes that alias expansion may add in total, counting aliases inside anchored content.
MAX_ALIAS_NODES = 10_000

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PlanFileError(ValueError):
    """The plan file cannot be read or parsed; ``where`` locates it, ``message`` says why."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")


def read_plan_text(path: Path, env_var: str) -> str:
    """The text of the plan at ``path``: a regular UTF-8 file of at most MAX_PLAN_BYTES.

    ``env_var`` is named in the message when the file does not exist.
    """
    try:
        raw = _read_regular(path, MAX_PLAN_BYTES)
    except FileNotFoundError:
        raise PlanFileError(
            "(file)", f"not found; create it or set {env_var} to the plan's path"
        ) from None
    except _TooBig as exc:
        raise PlanFileError(
            "(file)",
            f"is {exc.size} bytes, more than the {MAX_PLAN_BYTES} bytes (1 MiB) a plan may "
            "have; check that the path names the plan and not another file",
        ) from None
    except _NotRegular as exc:
        raise PlanFileError(
            "(file)", f"is {exc}, not a regular file; point the plan path at the plan's YAML file"
        ) from None
    except OSError as exc:
        raise PlanFileError("(file)", f"cannot be read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanFileError(
            "(file)", f"is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None


def read_small_text(path: Path, max_bytes: int) -> str:
    """A file the plan names (e.g. a public key): regular, at most ``max_bytes``, UTF-8.

    Raises FileNotFoundError if it is missing and ValueError (no content in the message) if it
    is not a regular file, too big or not UTF-8, so a FIFO or a device is never read.
    """
    try:
        raw = _read_regular(path, max_bytes)
    except _TooBig as exc:
        raise ValueError(f"is {exc.size} bytes, more than {max_bytes}") from None
    except _NotRegular as exc:
        raise ValueError(f"is {exc}, not a regular file") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 text (byte {exc.start})") from None


class _TooBig(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


class _NotRegular(Exception):
    pass


def _read_regular(path: Path, max_bytes: int) -> bytes:
    info = os.stat(path)  # follows symlinks: a mounted ConfigMap is a link to a file
    _check_regular(info)
    if info.st_size > max_bytes:
        raise _TooBig(info.st_size)
    # O_NONBLOCK: if the path was swapped for a FIFO since the stat, opening it must not wait
    # for a writer; the fstat below then refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        _check_regular(os.fstat(fd))
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > max_bytes:  # the file grew after the stat
        raise _TooBig(size)
    return b"".join(chunks)


def _check_regular(info: os.stat_result) -> None:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise _NotRegular("a directory")
    if stat.S_ISFIFO(mode):
        raise _NotRegular("a FIFO (named pipe)")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise _NotRegular("a device")
    if stat.S_ISSOCK(mode):
        raise _NotRegular("a socket")
    raise _NotRegular("a special file")


def _too_big(size: int) -> str:
    return (
        f"is {size} bytes, more than the {MAX_PLAN_BYTES} bytes (1 MiB) a plan may have; "
        "check that the path names the plan and not another file"
    )


def parse_plan_yaml(text: str) -> Any:
    """Parse ``text`` as YAML within the limits above; raise :class:`PlanFileError` if not."""
    if len(text) > MAX_PLAN_BYTES:
        raise PlanFileError("(file)", _too_big(len(text.encode("utf-8", "replace"))))
    try:
        _check_events(text)
        return yaml.load(text, Loader=_PlanLoader)  # noqa: S506 - a SafeLoader subclass
    except PlanFileError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        if "maximum nesting depth" in problem:  # libyaml's own limit, met while scanning ahead
            raise PlanFileError(where, _too_deep()) from None
        context = getattr(exc, "context", None)
        detail = f"{context}, {problem}" if context else problem
        raise PlanFileError(where, f"not valid YAML: {_clean(detail)}") from None
    except (ValueError, OverflowError) as exc:
        # PyYAML builds dates, times and big numbers itself and raises plain errors.
        raise PlanFileError(
            "(file)", f"holds a value YAML cannot read: {_clean(str(exc))}"
        ) from None
    except RecursionError:  # defence in depth; _check_events bounds the nesting first
        raise PlanFileError("(file)", _too_deep()) from None


def _too_deep() -> str:
    return (
        f"is nested more than {MAX_DEPTH} levels deep; a plan needs only a few levels, check "
        "the indentation and brackets"
    )


def _clean(text: str) -> str:
    return bounded(redact(" ".join(text.split())), 300)


def _where(event: Any) -> str:
    mark = event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}"


class _Frame:
    """An open collection in the event stream: its anchor and where the walk is inside it."""

    __slots__ = ("anchor", "expect_key", "index", "is_mapping", "key", "start")

    def __init__(self, anchor: str | None, start: int, is_mapping: bool) -> None:
        self.anchor = anchor
        self.start = start  # nodes produced before this collection
        self.is_mapping = is_mapping
        self.expect_key = True
        self.key: str = "?"
        self.index = -1


def _field_path(frames: list[_Frame]) -> str:
    parts = [frame.key if frame.is_mapping else str(frame.index) for frame in frames]
    return ".".join(parts) or "(top level)"


def _check_events(text: str) -> None:
    """Walk the event stream (no objects built) and refuse deep nesting and alias bombs.

    The expanded size of every anchored node is measured as the stream goes by, counting the
    aliases inside it at their own expanded size, so a bomb is recognised from its first levels
    in time linear in the file. Messages name the field being read (``x.y.0``) as well as the
    line and column.
    """
    aliases = 0
    added = 0  # nodes that aliases expand to
    produced = 0  # nodes so far, each alias counted at its expanded size
    sizes: dict[str, int] = {}
    frames: list[_Frame] = []
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.NodeEvent) and frames:
            # Where this node sits: a key or a value of the mapping, or the next list item.
            frame = frames[-1]
            if not frame.is_mapping:
                frame.index += 1
            elif frame.expect_key:
                scalar = isinstance(event, yaml.ScalarEvent)
                frame.key = bounded(redact(event.value), 60) if scalar else "?"
                frame.expect_key = False
            else:
                frame.expect_key = True
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise PlanFileError(
                    _where(event),
                    f"uses more than {MAX_ALIASES} YAML aliases (*name), at "
                    f"{_field_path(frames)}; write the values out",
                )
            size = sizes.get(event.anchor, 1)
            added += size
            produced += size
            if added > MAX_ALIAS_NODES:
                raise PlanFileError(
                    _where(event),
                    f"YAML aliases would expand to more than {MAX_ALIAS_NODES} values (an alias "
                    f"bomb?), at {_field_path(frames)}; the plan was not expanded. Write the "
                    "values out or use fewer aliases",
                )
        elif isinstance(event, yaml.ScalarEvent):
            produced += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(frames) >= MAX_DEPTH:
                raise PlanFileError(_where(event), f"{_too_deep()} (at {_field_path(frames)})")
            produced += 1
            frames.append(
                _Frame(event.anchor, produced - 1, isinstance(event, yaml.MappingStartEvent))
            )
        elif isinstance(event, yaml.CollectionEndEvent):
            frame = frames.pop()
            if frame.anchor is not None:
                sizes[frame.anchor] = produced - frame.start


class _PlanLoader(_Loader):  # type: ignore[misc, valid-type]
    """The safe loader, refusing duplicate keys in a mapping."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # Keys are compared as written (tag and text), which needs no second construction.
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                mark = key_node.start_mark
                raise PlanFileError(
                    f"line {mark.line + 1}, column {mark.column + 1}",
                    f"the key {bounded(redact(key_node.value), 80)!r} appears twice in the same "
                    "mapping; YAML would silently keep only the last one. Remove one of them",
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_MERGE_TAG = "tag:yaml.org,2002:merge"


# --------------------------------------------------------------------------- $VARS

#: ``$NAME`` and ``${NAME}``, the forms os.path.expandvars understands.
_VAR = re.compile(r"\$(?:(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|\{(?P<braced>[^}]*)\})")


class UndefinedVariableError(ValueError):
    """A ``$VAR`` in a path is not set; ``names`` lists each undefined variable once."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        shown = ", ".join(f"${{{n}}}" for n in names)
        one = len(names) == 1
        super().__init__(
            f"uses {shown}, which {'is' if one else 'are'} not set in the environment; set "
            f"{'it' if one else 'them'} (e.g. export {names[0]}=/path) or write the path out"
        )


def undefined_variables(value: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``$VARS`` in ``value`` that ``environ`` (default: os.environ) does not define."""
    env = os.environ if environ is None else environ
    missing: list[str] = []
    for match in _VAR.finditer(value):
        name = match["bare"] or match["braced"] or ""
        if name not in env and name not in missing:
            missing.append(name)
    return missing


def expand_variables(value: str, environ: Mapping[str, str] | None = None) -> str:
    """``value`` with ``$VAR``/``${VAR}`` replaced; an undefined one raises, never stays literal."""
    env = os.environ if environ is None else environ
    missing = undefined_variables(value, env)
    if missing:
        raise UndefinedVariableError(missing)
    return _VAR.sub(lambda m: env[m["bare"] or m["braced"]], value)
