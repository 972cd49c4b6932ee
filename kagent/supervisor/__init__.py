"""The generic supervisor: runs any list of ComponentSpecs."""
