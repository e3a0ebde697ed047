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
