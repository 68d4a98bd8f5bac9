"""`pip install --no-build-isolation .` (non-editable) builds a working package
(the editable install is what `make test` itself runs), and the installed
package carries the CMake files for C++ users."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pip_install_into_a_target_directory(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "-q",
         "--target", str(target), str(ROOT)],
        check=True, cwd=tmp_path,
    )
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(target)!r})
        import torch, mirrorflow, os
        assert mirrorflow.__file__.startswith({str(target)!r}), mirrorflow.__file__
        p = torch.ones(3, dtype=torch.float64, requires_grad=True)
        p.grad = torch.ones(3, dtype=torch.float64)
        mirrorflow.MirrorDescent([p], lr=0.5, mirror="hyperbolic", beta=0.75).step()
        assert torch.allclose(p.detach(), torch.full((3,), 1 - 0.5 * 1.25, dtype=torch.float64))
        cfg = os.path.join(mirrorflow.cmake_prefix_path, "mirrorflow", "mirrorflowConfig.cmake")
        assert os.path.exists(cfg), cfg
        assert os.path.exists(os.path.join(os.path.dirname(mirrorflow.__file__), "include",
                                           "mirrorflow", "optim.h"))
        print("ok", mirrorflow.build_info())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.stdout.startswith("ok")
