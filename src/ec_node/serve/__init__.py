"""Watching: the HTTP server a viewer, a media server or a script uses (watch page, HLS, virtual tuner, status)."""
