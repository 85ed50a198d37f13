"""Widgets of the Textual dashboard, each drawing a part of `tuskit.desktop.ui.model`."""
