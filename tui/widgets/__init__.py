"""The panes of the main screen; each renders one kind of engine event."""
