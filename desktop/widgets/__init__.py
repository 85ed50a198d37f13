"""Pieces of the Textual dashboard: a pure model of the upload queue, formatting, and the widgets that draw it."""
