"""crad's benchmark suite: DESIGN workloads W0-W4 for crad and its peers."""
