"""The encoder: its config, torch network, torch-free fast path and the model directory format."""
