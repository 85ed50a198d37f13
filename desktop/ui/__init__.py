"""The Textual dashboard (`tuskit desk`): a pure model folded from engine events, the app, its widgets and
stylesheet."""
