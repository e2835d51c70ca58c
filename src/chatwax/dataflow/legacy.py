"""Recovery snapshots written before the package layout changed still load.

Bytewax pickles keyed state, and a pickle names each class by its module. Snapshots of
chatwax 0.1 (before `chatwax.core`) name `chatwax.steps` and `chatwax.protocol`; without
these aliases an upgraded dataflow could not resume them and would fail at start.
The classes kept their fields (new ones take defaults when loaded), so an alias suffices.
"""

from __future__ import annotations

import sys
import types
from typing import Final

from chatwax.core import conversation, history, intake, limits, protocol

OLD_MODULES: Final[dict[str, dict[str, type]]] = {
    "chatwax.steps": {
        "Conversation": conversation.Conversation,
        "Turn": history.Turn,
        "Accepted": intake.Accepted,
        "UserLimits": limits.UserLimits,
        "Release": limits.Release,
    },
    "chatwax.protocol": {
        "PromptRequest": protocol.PromptRequest,
        "Usage": protocol.Usage,
    },
}


def install() -> None:
    """Make the old module names resolve to today's classes (for unpickling only)."""
    for name, classes in OLD_MODULES.items():
        if name in sys.modules:
            continue
        module = types.ModuleType(name, f"Alias of moved classes: {__name__}")
        for attr, cls in classes.items():
            setattr(module, attr, cls)
        sys.modules[name] = module
