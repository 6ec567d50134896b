"""aist-edge-loss: an example third-party AIST plugin (see CONTRIBUTING.md)."""
