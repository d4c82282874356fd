"""Built-in s3 plugin for retention (loaded through the `retention` entry point)."""
