"""The sync engine: what has to be uploaded, in which order, what a failure leads to, and the events that
say so. On disk it keeps its SQLite journal and run lock and reads (stats, hashes) the files it uploads;
it reaches the network only through `tuskit.desktop.client` and imports neither Textual nor Rich, so
`tuskit sync` runs where they are missing.

Kept free of imports: `tuskit.desktop.engine.policy` and the other pure modules load without the threads,
HTTP client and watchers that `tuskit.desktop.engine.engine` brings in.
"""
