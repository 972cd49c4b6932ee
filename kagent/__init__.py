"""kagent: a k0s-style Kubernetes node agent.

Pure planning core (config, paths, specs, PKI plan), one generic supervisor, a thin CLI.
"""

__version__ = "0.1.0"
