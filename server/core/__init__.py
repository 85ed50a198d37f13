"""The tus state machine and the ports it needs; no Tornado, no Redis, no file I/O of its own."""
