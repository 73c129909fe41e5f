"""Executors run tasks somewhere (this machine, Kubernetes, Slurm) behind one small contract."""
