"""The Denoise dock: model picker, options, noise readout, adaptation, the output layer
and the metrics, faithfulness and comparison panels."""
