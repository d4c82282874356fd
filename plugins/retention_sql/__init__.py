"""Built-in sql plugin for retention (loaded through the `retention` entry point)."""
