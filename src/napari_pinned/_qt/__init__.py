"""Qt widgets of the napari plugin: they call the Qt-free core and hold no science."""
