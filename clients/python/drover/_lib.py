"""Finds and loads libdrover.so and declares its C API (producer/drover.h).

The library is looked for, in this order:

1. ``DROVER_LIB``: the path of the shared object (e.g. a build tree's
   ``producer/libdrover.so``);
   If it is set but cannot be loaded, nothing else is tried.
2. ``pkg-config --variable=libdir libdrover``: the directory it was
   installed to;
3. ``ctypes.util.find_library("drover")``: the linker's search path
   (ldconfig cache, ``LD_LIBRARY_PATH``);
4. common library directories (/usr/local/lib, /usr/lib, their multiarch
   and lib64 variants).

When none has it, importing :mod:`drover` raises
:class:`DroverLibraryNotFound` (an :class:`ImportError`) listing what was
tried.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import subprocess
from typing import List, Optional

ID_SIZE = 37

OK = 0
EINVAL = 1
EUNREACHABLE = 2
ETIMEOUT = 3
EREJECTED = 4
EPROTO = 5
ENOMEM = 6

_SONAMES = ("libdrover.so.0", "libdrover.so")


class DroverLibraryNotFound(ImportError):
    """libdrover.so could not be found or loaded; the message says where it
    was looked for and how to point at it."""


class JobT(ctypes.Structure):
    _fields_ = [
        ("queue", ctypes.c_char_p),
        ("type", ctypes.c_char_p),
        ("payload_json", ctypes.c_char_p),
        ("payload_msgpack", ctypes.c_void_p),
        ("payload_len", ctypes.c_size_t),
        ("priority", ctypes.c_int),
        ("delay_s", ctypes.c_double),
        ("run_at_ms", ctypes.c_int64),
        ("max_attempts", ctypes.c_int),
        ("timeout_s", ctypes.c_double),
        ("key", ctypes.c_char_p),
        ("batch", ctypes.c_char_p),
        ("trace", ctypes.c_char_p),
        ("backoff_base_s", ctypes.c_double),
        ("backoff_factor", ctypes.c_double),
        ("backoff_cap_s", ctypes.c_double),
        ("backoff_jitter", ctypes.c_int),
        ("result_ttl_s", ctypes.c_double),
        ("after", ctypes.POINTER(ctypes.c_char_p)),
        ("nafter", ctypes.c_size_t),
        ("after_any", ctypes.POINTER(ctypes.c_char_p)),
        ("nafter_any", ctypes.c_size_t),
    ]


class AckT(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_char * ID_SIZE),
        ("duplicate", ctypes.c_int),
        ("error", ctypes.c_char * 256),
        ("unanswered", ctypes.c_int),
        ("code", ctypes.c_char_p),
    ]


class ResultT(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_char_p),
        ("index", ctypes.c_size_t),
        ("state", ctypes.c_char_p),
        ("attempts", ctypes.c_int),
        ("result_json", ctypes.c_char_p),
        ("category", ctypes.c_char_p),
        ("error", ctypes.c_char_p),
        ("finished_ms", ctypes.c_int64),
        ("more", ctypes.c_int),
    ]


class CtrlT(ctypes.Structure):
    _fields_ = [
        ("verb", ctypes.c_char_p),
        ("id", ctypes.c_char_p),
        ("queue", ctypes.c_char_p),
        ("worker", ctypes.c_char_p),
        ("dead", ctypes.c_int),
        ("has_value", ctypes.c_int),
        ("value", ctypes.c_double),
        ("args_json", ctypes.c_char_p),
    ]


class OptsT(ctypes.Structure):
    _fields_ = [
        ("endpoints", ctypes.c_char_p),
        ("timeout_ms", ctypes.c_int),
        ("curve_secret", ctypes.c_char_p),
        ("curve_server", ctypes.c_char_p),
    ]


RESULT_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ResultT), ctypes.c_void_p)


def _pkg_config_libdir() -> Optional[str]:
    try:
        out = subprocess.run(
            ["pkg-config", "--variable=libdir", "libdrover"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    d = out.stdout.strip()
    return d if out.returncode == 0 and d else None


def _common_dirs() -> List[str]:
    arch = platform.machine()
    multiarch = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(arch, "")
    dirs = []
    for prefix in ("/usr/local", "/usr"):
        dirs.append(prefix + "/lib")
        if multiarch:
            dirs.append(prefix + "/lib/" + multiarch)
        dirs.append(prefix + "/lib64")
    return dirs


def _load() -> ctypes.CDLL:
    tried: List[str] = []

    def attempt(path: str, how: str) -> Optional[ctypes.CDLL]:
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{how}: {path} ({e})")
            return None

    env = os.environ.get("DROVER_LIB")
    if env:
        lib = attempt(env, "DROVER_LIB")
        if lib is not None:
            return lib
        # An explicit path is not second-guessed with another library.
        raise DroverLibraryNotFound(
            f"libdrover.so not loaded: {tried[-1]}\n"
            "Fix: set DROVER_LIB to the path of libdrover.so (e.g. "
            "BUILD/producer/libdrover.so), or unset it to search the "
            "installed one")
    else:
        tried.append("DROVER_LIB: not set")

    libdir = _pkg_config_libdir()
    if libdir:
        for so in _SONAMES:
            p = os.path.join(libdir, so)
            if os.path.exists(p):
                lib = attempt(p, "pkg-config libdir")
                if lib is not None:
                    return lib
        else:
            tried.append(f"pkg-config libdir {libdir}: no libdrover.so there")
    else:
        tried.append("pkg-config --variable=libdir libdrover: no answer (libdrover.pc not installed, or pkg-config missing)")

    name = ctypes.util.find_library("drover")
    if name:
        lib = attempt(name, "ctypes.util.find_library")
        if lib is not None:
            return lib
    else:
        tried.append('ctypes.util.find_library("drover"): not found')

    for d in _common_dirs():
        for so in _SONAMES:
            p = os.path.join(d, so)
            if os.path.exists(p):
                lib = attempt(p, "common directory")
                if lib is not None:
                    return lib
    tried.append("common directories: " + ", ".join(_common_dirs()) + ": no libdrover.so")

    raise DroverLibraryNotFound(
        "libdrover.so not found. Tried:\n  - "
        + "\n  - ".join(tried)
        + "\nFix: install drover (cmake --install BUILD puts libdrover.so and "
        "libdrover.pc under the prefix; run ldconfig for /usr/local/lib), or "
        "set DROVER_LIB to the library's path, e.g. "
        "DROVER_LIB=/path/to/build/producer/libdrover.so"
    )


def _declare(lib: ctypes.CDLL) -> None:
    c_client = ctypes.c_void_p
    cp = ctypes.c_char_p
    lib.drover_strerror.argtypes = [ctypes.c_int]
    lib.drover_strerror.restype = cp
    lib.drover_connect_opts.argtypes = [ctypes.POINTER(OptsT)]
    lib.drover_connect_opts.restype = c_client
    lib.drover_close.argtypes = [ctypes.POINTER(c_client)]
    lib.drover_close.restype = None
    lib.drover_last_error.argtypes = [c_client]
    lib.drover_last_error.restype = cp
    lib.drover_last_code.argtypes = [c_client]
    lib.drover_last_code.restype = cp
    lib.drover_endpoint.argtypes = [c_client]
    lib.drover_endpoint.restype = cp
    lib.drover_opts_init.argtypes = [ctypes.POINTER(OptsT)]
    lib.drover_opts_init.restype = None
    lib.drover_job_init.argtypes = [ctypes.POINTER(JobT)]
    lib.drover_job_init.restype = None
    lib.drover_submit.argtypes = [c_client, ctypes.POINTER(JobT), ctypes.c_char_p]
    lib.drover_submit.restype = ctypes.c_int
    lib.drover_submit_many.argtypes = [c_client, ctypes.POINTER(JobT), ctypes.c_size_t, ctypes.POINTER(AckT)]
    lib.drover_submit_many.restype = ctypes.c_int
    lib.drover_wait.argtypes = [
        c_client,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_size_t,
        ctypes.c_int,
        RESULT_CB,
        ctypes.c_void_p,
    ]
    lib.drover_wait.restype = ctypes.c_int
    lib.drover_cancel.argtypes = [c_client, cp]
    lib.drover_cancel.restype = ctypes.c_int
    # body_json_out is char **: taken as a void pointer so that the memory
    # can be handed back to free().
    lib.drover_ctrl_ex.argtypes = [c_client, ctypes.POINTER(CtrlT), ctypes.POINTER(ctypes.c_void_p)]
    lib.drover_ctrl_ex.restype = ctypes.c_int
    lib.drover_batch_jobs.argtypes = [c_client, cp, cp, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    lib.drover_batch_jobs.restype = ctypes.c_int


lib = _load()
_declare(lib)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_libc.free.argtypes = [ctypes.c_void_p]
_libc.free.restype = None


def free(p: Optional[int]) -> None:
    """free() of the C library, for memory libdrover hands over."""
    if p:
        _libc.free(p)


def strerror(err: int) -> str:
    return (lib.drover_strerror(err) or b"").decode("utf-8", "replace")
