"""Deployment: ONNX export, TensorRT engine building and runtime (export/ scripts call these)."""
