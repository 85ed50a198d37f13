"""tuskit.desktop: a folder-watching upload engine and its Textual dashboard."""
