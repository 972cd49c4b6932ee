"""Pure. Component modules, each returning a ComponentSpec; the registries per role."""
