"""Built-in fs plugin for retention (loaded through the `retention` entry point)."""
