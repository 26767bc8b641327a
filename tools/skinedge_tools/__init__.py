"""skinedge-tools: train, quantize, evaluate and report the skinedge model (TensorFlow lives here only)."""

__version__ = "0.1.0"
