"""The cluster PKI: pure plan and issuing, and the store that applies them."""
