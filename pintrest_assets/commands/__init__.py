"""The `pintrest` commands, one module each; `pintrest_assets.cli` picks the one to load."""
