"""Edge. Facts about this host, gathered once, and the single-instance lock."""
