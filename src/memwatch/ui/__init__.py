"""The Textual dashboard: the only part of memwatch that imports textual."""
