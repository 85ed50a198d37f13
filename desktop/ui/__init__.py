"""The Textual dashboard (`tuskit desk`): a pure model folded from engine events, the app, its widgets and
stylesheet. It reaches files and the server only through the engine: no disk, no HTTP of its own."""
