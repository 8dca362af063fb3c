"""data_manifest package."""
