"""The Train dock: training a PINNED model on napari layers, with a live loss plot."""
