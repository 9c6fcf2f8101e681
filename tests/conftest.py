"""Fixtures shared by the whole suite: one dtype fixture runs tests in float32 and float64."""

import os

import pytest
import torch

# Triton kernels run on the CPU through Triton's interpreter when there is no GPU; the flag is
# read when a kernel is defined, so it is set before any test imports one.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# CP factors fitted by the tests are cached inside the checkout (.pytest_cache), never in the user's cache
os.environ.setdefault("EQUIZOO_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "equizoo"))


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    """Run the test once per floating-point precision; sets the default dtype meanwhile."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(request.param)
    yield request.param
    torch.set_default_dtype(previous)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def float64():
    """Run the test with float64 as the default dtype (modules built inside are float64 throughout)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch.float64
    torch.set_default_dtype(previous)
