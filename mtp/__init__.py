"""mtp: multi-token prediction (Gloeckle et al., ICML 2024) as a reproducible pipeline."""
import os
import shutil

__version__ = "0.1.0"


class UserError(Exception):
    """A mistake in the user's input (config, files, flags).

    The CLI prints it as one line and exits with status 2, never with a traceback.
    The message names the field or file and, where possible, the fix.
    """


def require_compiler(field, device="cpu"):
    """torch.compile writes C++ kernels on CPU: refuse `field: true` (a config key) in one line when no C++
    compiler ($CXX or g++) is on PATH."""
    if device == "cpu" and not shutil.which(os.environ.get("CXX", "g++")):
        raise UserError(f"{field}: true needs a C++ compiler on CPU (torch.compile writes C++ kernels) and $CXX or "
                        f"g++ is not on PATH: install one (apt-get install g++) or set {field}: false")
