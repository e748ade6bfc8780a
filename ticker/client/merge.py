"""The client's merge of Q entries into full quotes, per symbol (pure, no I/O): docs/protocol.md's merge rule.

On a connection with ``delta`` the server sends a symbol's first entry full and then only the fields that
changed (``null``: the field went away). :class:`EntryMerger` keeps one state dict per symbol:

- a ``snapshot`` entry replaces the state;
- a ``quotes`` entry becomes the state when there is none; otherwise it is ignored when its ``q`` is not
  above the state's, and else merged: a ``null`` deletes the key, any other value sets it.

Without ``delta`` every entry is full, so a newer ``quotes`` entry replaces the state instead of merging into
it (a field the quote lost must go). The state is the full quote (restricted to the selected fields) at its ``q``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Entry = dict[str, Any]


class EntryMerger:
    """Per-symbol merged state of Q entries; ``delta``: the connection's ``quotes`` entries are deltas."""

    __slots__ = ("_state", "delta")

    def __init__(self, delta: bool = False) -> None:
        self.delta = delta
        self._state: dict[str, Entry] = {}

    def apply(self, entry: Any, snapshot: bool = False) -> Entry | None:
        """Apply one entry (of a ``snapshot`` message when ``snapshot``); return the symbol's merged state, or
        None when the entry was ignored (not newer than the state). ``ValueError`` for a malformed entry (no
        string ``s`` or no integer ``q``); the state is then unchanged. Do not change the dict returned."""
        if not isinstance(entry, dict):
            raise ValueError(f"expected a Q entry object, got {type(entry).__name__}")
        s, q = entry.get("s"), entry.get("q")
        if type(s) is not str or not s or type(q) is not int:
            raise ValueError(f"expected a Q entry with a string s and an integer q: {str(entry)[:200]}")
        state = self._state.get(s)
        if not snapshot and state is not None:
            if q <= state["q"]:
                return None
            if self.delta:
                for key, value in entry.items():
                    if value is None:
                        state.pop(key, None)
                    else:
                        state[key] = value
                return state
        fresh = {k: v for k, v in entry.items() if v is not None}  # a copy: merging changes it in place
        self._state[s] = fresh
        return fresh

    def state(self, symbol: str) -> Entry | None:
        """The merged state of ``symbol`` (None before its first entry). Do not change it."""
        return self._state.get(symbol)

    def forget(self, symbols: Iterable[str]) -> None:
        """Drop the state of ``symbols``: their next entry starts afresh."""
        for s in symbols:
            self._state.pop(s, None)

    def clear(self) -> None:
        """Drop every state (a new connection: its deltas start from its snapshot)."""
        self._state.clear()

    def restart(self) -> None:
        """The ``q`` numbering started again (another epoch): keep each state, the base of the connection's next
        delta, but take its next entry whatever its ``q``."""
        for state in self._state.values():
            state["q"] = 0
