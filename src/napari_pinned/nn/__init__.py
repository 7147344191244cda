"""The network and everything a model is: the PINNED network, its loss, how an image
becomes its input (conditioning), model files, BioImage Model Zoo packages, the torch and
ONNX runners, and the one resolver of what a model reference names."""
