"""tuskit.desktop: a folder-watching upload engine and its Textual dashboard.

Where things live, and what each part may touch:
- `engine/`: the sync engine (journal, queue, workers, retry policy, events); on disk it keeps its SQLite
  journal and run lock and reads the files it uploads, it reaches the server only through `client/`, and
  nothing in it imports Textual or Rich;
- `watch/`: which files exist and when they are finished (watchdog, inotify, scans); reads the disk, never
  the network;
- `client/`: the only code that speaks HTTP (tus uploads, thumbnail fetches, the auth header);
- `ui/`: the Textual dashboard, which renders engine events and sends commands; no disk, no HTTP;
- `cli.py`, `config.py`, `progress_log.py`: the composition root (flags and the TOML file become a
  `SyncConfig`, which becomes an engine with a front end: the dashboard or one log line per event).
"""
