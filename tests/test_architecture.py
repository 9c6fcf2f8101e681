"""The layout rules of ARCHITECTURE.md, checked rather than hoped for."""

import subprocess
import sys
from pathlib import Path

import datasets

ROOT = Path(__file__).resolve().parents[1]


def test_import_rules_hold():
    """import-linter contracts of pyproject.toml: who may import whom."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_datasets_is_this_repository():
    """Our top-level ``datasets`` shadows Hugging Face's package of the same name."""
    assert Path(datasets.__file__).resolve().parent == ROOT / "datasets"


def test_cpu_use_works_without_gpu_packages():
    """With triton and cuEquivariance made unimportable, every method still builds and runs on CPU."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('triton', 'cuequivariance', 'cuequivariance_torch'):\n"
        "            raise ImportError(f'{name} blocked by the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import torch\n"
        "import layers, zoo, datasets, train\n"
        "from layers.tensor_product import make_tensor_product\n"
        "for method in ('cg', 'gaunt', 'grid', 'cp'):\n"
        "    tp = make_tensor_product('2x0e+2x1o', '0e+1o', '2x0e+2x1o', method=method, mode='uvu')\n"
        "    assert tp(torch.randn(3, 8), torch.randn(3, 4)).shape == (3, 8)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
