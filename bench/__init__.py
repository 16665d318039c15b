"""A checkout's entry to crad's benchmark suite (the suite itself is the package ``crad.bench``)."""
