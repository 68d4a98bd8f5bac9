"""The CUDA build, checked without a GPU: whether the kernels were built
(MIRRORFLOW_CUDA, the toolkit, the PyTorch build) and for which architectures
(the library's machine code and PTX, read with cuobjdump)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest
import torch

import mirrorflow

HAS_GPU = torch.cuda.is_available()
cuda_build = pytest.mark.skipif(not mirrorflow.cuda_built(),
                                reason="this build has no CUDA kernels (cuda_built() is False)")


def _nvcc() -> str | None:
    for candidate in (shutil.which("nvcc"),
                      os.path.join(os.environ.get("CUDA_HOME", "/nonexistent"), "bin", "nvcc"),
                      "/usr/local/cuda/bin/nvcc"):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def _cuobjdump() -> str | None:
    candidates = [shutil.which("cuobjdump"), "/usr/local/cuda/bin/cuobjdump"]
    nvcc = _nvcc()
    if nvcc:
        candidates.append(os.path.join(os.path.dirname(nvcc), "cuobjdump"))
    try:  # Triton ships one with PyTorch's CUDA wheels
        import triton.backends.nvidia as nv

        candidates.append(os.path.join(os.path.dirname(nv.__file__), "bin", "cuobjdump"))
    except ImportError:
        pass
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def _library() -> str:
    libs = sorted(glob.glob(os.path.join(os.path.dirname(mirrorflow.__file__), "lib",
                                         "libmirrorflow.so*")))
    real = [p for p in libs if not os.path.islink(p)]
    assert real, f"no libmirrorflow.so next to {mirrorflow.__file__}"
    return real[0]


def test_cuda_built_follows_toolkit_and_pytorch():
    """AUTO builds the kernels exactly when nvcc and a CUDA PyTorch are there,
    whether or not a GPU is present; a CPU-only PyTorch builds none."""
    info = mirrorflow.build_info()
    assert info["cuda_option"] in ("AUTO", "ON", "OFF")
    if info["cuda_option"] == "OFF" or torch.version.cuda is None:
        assert not mirrorflow.cuda_built()
        assert mirrorflow.cuda_architectures() == ""
    elif _nvcc() is not None:
        assert mirrorflow.cuda_built(), (
            "nvcc and a CUDA PyTorch are present but the kernels were not built")
    if HAS_GPU:
        assert mirrorflow.cuda_built(), "a GPU is present but this build has no CUDA kernels"


def _architectures(reported: str) -> tuple[set[str], set[str]]:
    """'80-real;90' -> machine code {'80', '90'}, PTX {'90'} (CMake's syntax)."""
    sass, ptx = set(), set()
    for entry in filter(None, reported.split(";")):
        number, _, kind = entry.partition("-")
        if kind in ("", "real"):
            sass.add(number)
        if kind in ("", "virtual"):
            ptx.add(number)
    return sass, ptx


@cuda_build
def test_library_holds_code_for_the_reported_architectures():
    tool = _cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not found (CUDA toolkit bin/ or Triton's copy)")
    sass, ptx = _architectures(mirrorflow.cuda_architectures())
    assert sass, mirrorflow.cuda_architectures()
    lib = _library()
    elf = subprocess.run([tool, "--list-elf", lib], capture_output=True, text=True, check=True)
    found_sass = {line.split(".sm_")[1].split(".")[0] for line in elf.stdout.splitlines()
                  if ".sm_" in line}
    listing = subprocess.run([tool, "--list-ptx", lib], capture_output=True, text=True,
                             check=True)
    found_ptx = {line.split(".sm_")[1].split(".")[0] for line in listing.stdout.splitlines()
                 if ".sm_" in line}
    assert found_sass == sass, (elf.stdout, sass)
    assert found_ptx == ptx, (listing.stdout, ptx)


@cuda_build
def test_library_uses_the_shared_cuda_runtime():
    """A CUDA runtime linked statically into the library would keep its own
    current device and error state, apart from PyTorch's (c10's CUDAGuard,
    streams and launch checks would talk to another runtime)."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) not found")
    symbols = subprocess.run([nm, _library()], capture_output=True, text=True,
                             check=True).stdout
    # "U cudaGetLastError@libcudart.so.13" when imported, "<address> t ..." when linked in
    uses = [line.split() for line in symbols.splitlines()
            if line.split() and line.split()[-1].split("@")[0] == "cudaGetLastError"]
    assert uses, "the library does not call cudaGetLastError (launch checks missing?)"
    assert all(fields[0] == "U" for fields in uses), uses
