"""Configuration: the typed model, the YAML loader with file:line errors, and the diff the
audit log records at reload."""
