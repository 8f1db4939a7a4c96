"""Named registries that code outside peftbench can extend: the techniques and the tasks.

A `Registry` maps names to entries. An entry is registered either as the object itself or as a
``"package.module:attribute"`` string that is imported on first use, so registering costs no
import. Installed packages add entries through Python entry points: every entry point of the
registry's group (e.g. ``peftbench.methods``) becomes a lazy entry named after the entry point,
discovered once, the first time a name is looked up that the registry does not know yet or the
names are listed. An unknown name is a `UserError` that suggests the closest known name.

This module imports nothing heavy (the entry point machinery and difflib only when needed).
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from peftbench.errors import UserError

T = TypeVar("T")


class LazyEntry:
    """An entry not imported yet: a ``"module:attribute"`` target, or an entry point."""

    def __init__(self, target: str, origin: str = "", loader: Callable[[], Any] | None = None):
        module, sep, attribute = target.partition(":")
        if not (module and sep and attribute):
            raise ValueError(f"a lazy entry is 'package.module:attribute', not {target!r}")
        self.target = target
        self.origin = origin
        self._loader = loader

    def load(self) -> Any:
        """Import the module and return the attribute (dotted attributes are followed)."""
        if self._loader is not None:
            return self._loader()
        module, _, attribute = self.target.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attribute.split("."):
            obj = getattr(obj, part)
        return obj

    def __repr__(self) -> str:
        return f"LazyEntry({self.target!r}{', ' + self.origin if self.origin else ''})"


class Registry(Generic[T]):
    """Entries by name: registered objects, lazy ``"module:attribute"`` strings, entry points.

    ``kind`` names an entry in messages ("method", "task"). ``group`` is the entry point group
    read once on demand (None: none). ``builtins`` registers the built-in entries; it runs once,
    before the first registration or lookup, so that a registry can stay lazy and duplicates
    are still detected. ``normalize`` maps a name to its key (e.g. lower case). ``convert``
    turns what was registered (for a lazy entry: what it loaded) into the entry, once, on first
    use (validating it, calling a factory); it receives the name and the object. ``unknown``
    is the message for an unknown name, with ``{name}`` and ``{known}`` (the known names,
    comma-separated) to fill in.
    """

    def __init__(
        self,
        kind: str,
        *,
        group: str | None = None,
        builtins: Callable[[], None] | None = None,
        normalize: Callable[[str], str] | None = None,
        convert: Callable[[str, Any], T] | None = None,
        unknown: str = "unknown {kind} '{name}'",
    ) -> None:
        self.kind = kind
        self.group = group
        self._builtins = builtins
        self._normalize = normalize or (lambda name: name)
        self._convert = convert
        self._unknown = unknown
        self._entries: dict[str, Any] = {}  # key -> what was registered
        self._ready: dict[str, T] = {}  # key -> the entry, loaded and converted
        self._lock = threading.RLock()
        self._builtins_state = "pending" if builtins else "done"
        self._entry_points_loaded = group is None
        self._points: dict[str, str] = {}  # key -> target of the entry point it came from
        self._loading: set[str] = set()  # keys whose lazy entry is being imported

    # ------------------------------------------------------------------ registering

    def register(self, name: str, entry: T | str, *, replace: bool = False) -> None:
        """Add ``entry`` under ``name``; a string entry is a lazy ``"module:attribute"``.

        A name registered already raises `ValueError` unless ``replace`` (registering the very
        same object or target again is a no-op, so re-importing a module is harmless).
        """
        self._load_builtins()
        key = self.key(name)
        value = LazyEntry(entry) if isinstance(entry, str) else entry
        with self._lock:
            old = self._entries.get(key)
            if key in self._loading:  # the module a lazy entry names registers it itself
                replace = True
            if old is not None and _same(old, value):
                return
            if old is not None and not replace:
                raise ValueError(f"a {self.kind} named '{key}' is registered already "
                                 "(pass replace=True to replace it)")
            self._entries[key] = value
            self._ready.pop(key, None)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error when absent); for tests and interactive use."""
        with self._lock:
            for table in (self._entries, self._ready, self._points):
                table.pop(self.key(name), None)

    def key(self, name: str) -> str:
        """The key ``name`` is stored under."""
        return self._normalize(name)

    # ------------------------------------------------------------------ looking up

    def names(self) -> list[str]:
        """Every name, built-in, registered and from entry points (sorted)."""
        self._load_builtins()
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def find(self, name: str) -> T | None:
        """The entry registered under ``name`` (loaded if lazy), else None."""
        self._load_builtins()
        key = self.key(name)
        if key not in self._entries:
            self._load_entry_points()
            if key not in self._entries:
                return None
        return self._resolve(key)

    def get(self, name: str) -> T:
        """The entry registered under ``name``; an unknown name is a `UserError`."""
        found = self.find(name)
        if found is None:
            raise self.unknown_error(name)
        return found

    def values(self) -> list[T]:
        """Every entry, loaded, in name order."""
        return [self._resolve(key) for key in self.names()]

    # ------------------------------------------------------------------ unknown names

    def suggest(self, name: str, extra: Iterable[str] = ()) -> str | None:
        """The known name closest to ``name`` (or to its key), if any is close enough."""
        import difflib

        candidates = [*self.names(), *extra]
        for probe in dict.fromkeys((self.key(name), name)):
            close = difflib.get_close_matches(probe, candidates, n=1)
            if close:
                return close[0]
        return None

    def unknown_error(self, name: str, extra: Iterable[str] = ()) -> UserError:
        """The `UserError` for an unknown ``name``: the registry's message and a hint."""
        message = self._unknown.format(kind=self.kind, name=name, known=", ".join(self.names()))
        close = self.suggest(name, extra)
        if close is not None:
            message += f"; did you mean '{close}'?"
        return UserError(message)

    # ------------------------------------------------------------------ internals

    def _resolve(self, key: str) -> T:
        with self._lock:
            if key in self._ready:
                return self._ready[key]
            value = self._entries[key]
            loaded = value
            if isinstance(value, LazyEntry):
                self._loading.add(key)
                try:
                    loaded = value.load()
                except (ImportError, AttributeError) as exc:
                    where = f" ({value.origin})" if value.origin else ""
                    raise UserError(f"cannot load {self.kind} '{key}' from {value.target}"
                                    f"{where}: {exc}") from None
                finally:
                    self._loading.discard(key)
                if self._entries.get(key) is not value:  # its module registered it itself
                    return self._resolve(key)
            entry = self._convert(key, loaded) if self._convert else loaded
            self._ready[key] = entry
            return entry

    def _load_builtins(self) -> None:
        if self._builtins_state != "pending":
            return
        with self._lock:
            if self._builtins_state != "pending":
                return
            self._builtins_state = "loading"  # a built-in module may register while loading
            try:
                assert self._builtins is not None
                self._builtins()
            except BaseException:
                self._builtins_state = "pending"
                raise
            self._builtins_state = "done"

    def _load_entry_points(self) -> None:
        if not self._entry_points_loaded:
            self.discover()

    def discover(self) -> None:
        """Read the entry point group (again): each entry point becomes a lazy entry.

        Lookups do this once by themselves; call it after installing a package into a running
        interpreter. An entry point whose name is taken by another entry is ignored, with a
        warning.
        """
        if self.group is None:
            return
        self._load_builtins()
        with self._lock:
            self._entry_points_loaded = True
            from importlib.metadata import entry_points

            for point in entry_points(group=self.group):
                key = self.key(point.name)
                dist = getattr(point.dist, "name", None) or "an installed package"
                old = self._entries.get(key)
                if old is not None:
                    if self._points.get(key) != point.value:
                        warnings.warn(f"ignoring the {self.kind} '{key}' of {dist} (entry "
                                      f"point {point.value}): the name is taken", stacklevel=3)
                    continue
                self._points[key] = point.value
                self._entries[key] = LazyEntry(point.value, f"entry point of {dist}",
                                               loader=point.load)


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, LazyEntry) and isinstance(new, LazyEntry):
        return old.target == new.target
    return old is new
