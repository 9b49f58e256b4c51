"""See WORKSPACE.md for the layout."""
