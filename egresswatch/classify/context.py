"""The tool is context: of a host's cited roles, pick the one naming the tool that reached it.

Tool names differ in spelling between tools.csv ("Gradio apps (library)") and catalog rows
("gradio", "huggingface_hub (hf CLI)"): both are reduced to keys before comparing.
"""

import re
from collections.abc import Sequence

from egresswatch.classify.destinations import Role

_PARENTHESES = re.compile(r"\([^)]*\)")
_PART_SEPARATORS = re.compile(r"[/;,]")


def tool_keys(name: str) -> frozenset[str]:
    """Comparable keys of a tool name: each '/'-part, whole and by its first word, lower-cased."""
    keys: set[str] = set()
    for part in _PART_SEPARATORS.split(_PARENTHESES.sub(" ", name.lower())):
        words = part.split()
        if words:
            keys.update((" ".join(words), words[0]))
    return frozenset(keys)


def role_for_tool(roles: Sequence[Role], tool: str | None) -> Role | None:
    """The first role (file order) naming `tool`, or None when none does (or no tool is known)."""
    if not tool:
        return None
    wanted = tool_keys(tool)
    for role in roles:
        if any(tool_keys(named) & wanted for named in role.tools if named != "generic"):
            return role
    return None
