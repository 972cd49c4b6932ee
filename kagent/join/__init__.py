"""Join tokens, the controller API and etcd membership."""
