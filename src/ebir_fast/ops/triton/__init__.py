"""Triton kernels. Importing this package needs triton; ebir_fast.ops imports it only on use."""
