"""Recorded sessions: the file format, the replay feed and the recorder."""
