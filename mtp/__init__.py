"""mtp: multi-token prediction (Gloeckle et al., ICML 2024) as a reproducible pipeline."""

__version__ = "0.1.0"


class UserError(Exception):
    """A mistake in the user's input (config, files, flags).

    The CLI prints it as one line and exits with status 2, never with a traceback.
    The message names the field or file and, where possible, the fix.
    """
