"""What the registries share (mtp.head_types, mtp.code_benchmarks, ...): a name -> entry table with one clear
error for an unknown name, and entries that name their code as "module:attr" so that registering stays
torch-free (config validation and the Snakefile read the registries at parse time)."""
import importlib

from mtp import UserError


class Registry(dict):
    """name -> entry (a dataclass with a `name`). `what`: what an entry is ("head type"), `home`: the module
    that registers the built-in entries (named in the error)."""

    def __init__(self, what, home):
        super().__init__()
        self.what, self.home = what, home

    def register(self, entry):
        """Add an entry and return it; a name registered twice is an error (remove the old entry first)."""
        if entry.name in self:
            raise UserError(f"{self.what} '{entry.name}' is registered twice ({self.home} and elsewhere); "
                            f"give it another name")
        self[entry.name] = entry
        return entry

    def lookup(self, name, where):
        if name not in self:
            raise UserError(f"{where}: unknown {self.what} '{name}'; known: {', '.join(self)} ({self.home} registers them)")
        return self[name]


def resolve(ref):
    """A callable, or "module:attr" naming one (imported now)."""
    if not isinstance(ref, str):
        return ref
    mod, attr = ref.split(":")
    return getattr(importlib.import_module(mod), attr)
