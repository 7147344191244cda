"""Sharing models with other tools: BioImage Model Zoo export (with the standalone
denoiser file that a package carries) and ONNX export."""
