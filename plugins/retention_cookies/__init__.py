"""Built-in cookies plugin for retention (loaded through the `retention` entry point)."""
