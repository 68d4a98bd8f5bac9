"""Builds mirrorflow through CMake (CMakeLists.txt holds the sources).

    pip install --no-build-isolation .      # into an environment with PyTorch >= 2.4
    pip install --no-build-isolation -e .   # editable

The extension is built against the PyTorch of the running interpreter, which is
why build isolation must be off. Environment variables:

    MIRRORFLOW_BUILD_DIR   CMake build tree (default: build/ in the source tree)
    MIRRORFLOW_CMAKE_ARGS  extra arguments for CMake, e.g. "-DMIRRORFLOW_CUDA=OFF"
    CMAKE_BUILD_PARALLEL_LEVEL  parallel compile jobs
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _version() -> str:
    for line in (ROOT / "CMakeLists.txt").read_text().splitlines():
        if line.startswith("project(mirrorflow VERSION"):
            return line.split()[2]
    raise RuntimeError("no version in CMakeLists.txt")


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        try:
            import torch.utils
        except ImportError as error:  # pragma: no cover - message for users
            raise RuntimeError(
                "mirrorflow is compiled against the PyTorch you already have: install "
                "PyTorch >= 2.4 first, then run `pip install --no-build-isolation .`"
            ) from error
        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("mirrorflow needs CMake >= 3.18 to build (pip install cmake)")
        build_dir = Path(os.environ.get("MIRRORFLOW_BUILD_DIR", ROOT / "build"))
        # The package directory is the CMake install prefix: _C next to
        # __init__.py, lib/libmirrorflow.so, include/ and lib/cmake/mirrorflow.
        ext_path = Path(self.get_ext_fullpath(ext.name)).resolve()
        editable = self.inplace or getattr(self, "editable_mode", False)
        package_dir = ROOT / "python" / "mirrorflow" if editable else ext_path.parent
        args = [
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
            "-DMIRRORFLOW_BUILD_PYTHON=ON",
        ]
        if shutil.which("ninja") and not (build_dir / "CMakeCache.txt").exists():
            args.append("-GNinja")
        args += shlex.split(os.environ.get("MIRRORFLOW_CMAKE_ARGS", ""))
        subprocess.check_call([cmake, "-S", str(ROOT), "-B", str(build_dir), *args])
        subprocess.check_call([cmake, "--build", str(build_dir)])
        subprocess.check_call(
            [cmake, "--install", str(build_dir), "--prefix", str(package_dir)],
            stdout=subprocess.DEVNULL,
        )
        if editable and package_dir / ext_path.name != ext_path:
            # setuptools copies the module from its build directory into the tree.
            ext_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(package_dir / ext_path.name, ext_path)


setup(
    name="mirrorflow",
    version=_version(),
    description="Mirror descent for deep learning: fused C++/CUDA optimizer steps for PyTorch",
    packages=["mirrorflow"],
    package_dir={"": "python"},
    ext_modules=[CMakeExtension("mirrorflow._C")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["torch>=2.4"],
    extras_require={"experiments": ["numpy", "matplotlib", "tqdm"]},
    zip_safe=False,
)
