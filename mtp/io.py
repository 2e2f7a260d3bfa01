"""Atomic file writes and digests: no partial file is ever taken as complete."""
import contextlib
import errno
import hashlib
import json
import os
import resource
import shutil
import tempfile
from pathlib import Path

NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it over `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as e:
        from mtp import UserError
        why = None if isinstance(e, UserError) else out_of_space(e, tmp)
        if why is None:
            raise
        raise UserError(f"{path}: could not write it: {why}; free space (or raise the limit) and rerun — "
                        f"nothing was written there, earlier files are untouched") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def out_of_space(exc, path=None):
    """Why `exc` (raised while writing `path`) is a full disk or a file-size limit, or None if it is not.

    Writers report it unevenly: OSError(ENOSPC/EFBIG/EDQUOT), numpy's OSError without errno,
    torch.save's RuntimeError, tokenizers' Exception; so the file and its disk are also checked directly.
    """
    code, e = None, exc
    while e is not None and code is None:
        code = e.errno if isinstance(e, OSError) and e.errno in NO_SPACE else None
        e = e.__cause__ or e.__context__
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if code is None and path is not None and os.path.exists(path):
        if limit != resource.RLIM_INFINITY and os.path.getsize(path) >= limit:
            code = errno.EFBIG
        elif shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < 1 << 20:
            code = errno.ENOSPC
    if code is None:
        return None
    text = f"{os.strerror(code)} ({errno.errorcode[code]})"
    if code == errno.EFBIG and limit != resource.RLIM_INFINITY:
        text += f": the file size limit (ulimit -f) is {limit} bytes"
    elif code in (errno.ENOSPC, errno.EDQUOT) and path is not None:
        text += f": {shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free} bytes free there"
    return text


def remove_stale_temps(folder):
    """Delete the temporary files (.<name>.*.tmp) that a killed writer left in `folder`.

    Only for folders written by one job at a time (a model's folder and its ckpt/, a dataset's folder).
    """
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def write_text(path, text):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path):
    from mtp import UserError
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found (run the stage that produces it first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); delete it and rerun the stage that wrote it") from None


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest(obj):
    """Short stable digest of a JSON-able object (config sections, tags)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]
