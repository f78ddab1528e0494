"""A deterministic synthetic detachment (支队) and a month of its business, for demos and benchmarks."""
