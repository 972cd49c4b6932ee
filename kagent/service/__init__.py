"""systemd/OpenRC unit rendering and installation."""
