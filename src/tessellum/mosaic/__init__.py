"""mosaic."""
