"""Build the native parts: the shim executable and the cffi module.

    .venv/bin/python native/build.py [--force]

Outputs (all gitignored):
  containerd_py/_bin/containerd-py-shim   the shim (docs/shim.md)
  containerd_py/_native.<EXT_SUFFIX>      cffi API-mode module over protocol.h
  containerd_py/cri/_gen/api_pb2*.py      the CRI's gRPC stubs (grpcio-tools)

Both are compiled with the compiler Python's sysconfig names (what cffi uses
too). Nothing is rebuilt when the outputs are newer than every source.
"""

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PKG = os.path.join(ROOT, "containerd_py")
SHIM = os.path.join(PKG, "_bin", "containerd-py-shim")
MODULE = os.path.join(PKG, "_native" + sysconfig.get_config_var("EXT_SUFFIX"))

CRI_PROTO = os.path.join(PKG, "cri", "api.proto")
CRI_GEN = os.path.join(PKG, "cri", "_gen")
CRI_OUT = os.path.join(CRI_GEN, "api_pb2_grpc.py")

SHIM_SOURCES = ["shim.c", "ctl.c", "log.c", "util.c", "protocol.c"]
HEADERS = ["shim.h", "protocol.h"]
CFLAGS = ["-O2", "-g0", "-Wall", "-Wextra", "-Werror", "-std=gnu11",
          "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong"]

# What Python sees of protocol.h: the functions and the constants.
CDEF = """
#define CDPY_LINE_MAX ...
#define CDPY_SIGNAL_BASE ...
#define CDPY_DRAIN_MS ...
int cdpy_format_exit(char *buf, size_t len, int status, long long ns);
int cdpy_parse_exit(const char *buf, int *status, long long *ns);
"""


def src(name):
    return os.path.join(HERE, name)


def newest(paths):
    return max(os.stat(p).st_mtime for p in paths)


def fresh(output, inputs):
    return os.path.exists(output) and os.stat(output).st_mtime >= newest(inputs)


def compiler():
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)


def build_shim():
    os.makedirs(os.path.dirname(SHIM), exist_ok=True)
    tmp = SHIM + ".tmp"
    cmd = compiler() + CFLAGS + ["-o", tmp] + [src(s) for s in SHIM_SOURCES]
    print("build.py:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    subprocess.run(["strip", tmp], check=False, stderr=subprocess.DEVNULL)
    os.replace(tmp, SHIM)


def build_module():
    from cffi import FFI

    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source("containerd_py._native", '#include "protocol.h"',
                   sources=[src("protocol.c")], include_dirs=[HERE],
                   extra_compile_args=["-O2"])
    with tempfile.TemporaryDirectory(prefix="cdpy-cffi-") as tmp:
        built = ffi.compile(tmpdir=tmp, verbose=False)
        print("build.py: cffi module", os.path.relpath(MODULE, ROOT), flush=True)
        part = MODULE + ".tmp"
        shutil.copyfile(built, part)
        os.replace(part, MODULE)


def build_cri_stubs():
    """protoc (from grpcio-tools) over the CRI definition. The proto is
    compiled as if it lived at containerd_py/cri/_gen/api.proto, so the
    generated service module imports its messages by their package path."""
    from grpc_tools import protoc
    import grpc_tools

    with tempfile.TemporaryDirectory(prefix="cdpy-proto-") as tmp:
        rel = os.path.join("containerd_py", "cri", "_gen", "api.proto")
        os.makedirs(os.path.dirname(os.path.join(tmp, rel)))
        shutil.copyfile(CRI_PROTO, os.path.join(tmp, rel))
        out = os.path.join(tmp, "out")
        os.makedirs(out)
        include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        rc = protoc.main(["grpc_tools.protoc", f"-I{tmp}", f"-I{include}",
                          f"--python_out={out}", f"--grpc_python_out={out}", rel])
        if rc != 0:
            raise SystemExit(f"build.py: protoc failed on {CRI_PROTO} ({rc})")
        os.makedirs(CRI_GEN, exist_ok=True)
        gen = os.path.join(out, "containerd_py", "cri", "_gen")
        for name in ("api_pb2.py", "api_pb2_grpc.py"):
            shutil.copyfile(os.path.join(gen, name), os.path.join(CRI_GEN, name + ".tmp"))
            os.replace(os.path.join(CRI_GEN, name + ".tmp"), os.path.join(CRI_GEN, name))
        with open(os.path.join(CRI_GEN, "__init__.py"), "w") as f:
            f.write("")
        print("build.py: CRI stubs", os.path.relpath(CRI_GEN, ROOT), flush=True)


def main(argv):
    force = "--force" in argv
    inputs = [src(s) for s in SHIM_SOURCES + HEADERS] + [os.path.abspath(__file__)]
    if force or not fresh(SHIM, inputs):
        build_shim()
    if force or not fresh(MODULE, [src("protocol.h"), src("protocol.c"),
                                   os.path.abspath(__file__)]):
        build_module()
    if force or not fresh(CRI_OUT, [CRI_PROTO, os.path.abspath(__file__)]):
        build_cri_stubs()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
