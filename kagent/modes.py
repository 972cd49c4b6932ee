"""Pure. The named file modes every writer uses (CIS Kubernetes Benchmark 1.1.x: keys and
kubeconfigs 0600, PKI dirs not world-readable). Pure modules import them from here; ``fsutil``
re-exports them."""

MODE_PRIVATE_KEY = 0o600
MODE_KUBECONFIG = 0o600
MODE_TOKEN = 0o600
MODE_CERT = 0o644
MODE_PUBLIC = 0o644
MODE_CONFIG = 0o644
MODE_PIDFILE = 0o644
MODE_PRIVATE_DIR = 0o700
MODE_TRAVERSABLE_DIR = 0o711  # a PKI dir component users must get through: no one but root lists it
MODE_DATA_DIR = 0o755
MODE_BIN_DIR = 0o755
MODE_BINARY = 0o750
