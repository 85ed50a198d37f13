"""Finding files to upload: change notifications, scans, ignore rules, and the stabiliser that decides a
file is finished. Reads the disk (stat, scandir, inotify), never the network; no Textual."""
