"""tuskit.server: a tus 1.0 server on Tornado with Redis state and a verified merge."""
