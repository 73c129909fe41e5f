"""The host toolkit: what runs things on this machine, whoever asks for it.

Process identity, spawning and reaping (``procs``), long-running services (``services``), the
container runtime (``containers``), the sandbox (``sandbox``, with ``outbound`` for its network and
``relay`` for an app's door), following log files (``logs``) and the environment processes inherit
(``env``). The local executor, apps, builds and images all use it; it knows nothing of jobs.
"""
