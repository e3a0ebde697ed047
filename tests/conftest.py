"""Test set-up shared by every test module.

Triton kernels can only run in the interpreter on a GPU-less machine, and TRITON_INTERPRET must be
set before any kernel module is imported, so it is set here, first.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# The tests measure numerics, not speed: keep the thread count of the machine they run on fixed so
# a failure reproduces (2 is what CI has).
torch.set_num_threads(min(2, os.cpu_count() or 1))

# No test may reach the Hugging Face hub: the machines are offline, and a test that "works" only
# online would not be a test here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tests.sd_fixtures import (  # noqa: E402, F401 (session fixtures)
    stage_files,
    static_graphs,
    tiny_base_dir,
)
