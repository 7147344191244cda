"""What the docks share: the job runner, layer pickers, collapsible sections, the model
registry and small widget helpers."""
