"""Background jobs: the jobs table, typed job specs, the worker side."""
