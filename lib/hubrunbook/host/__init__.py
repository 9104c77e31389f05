"""Facts and changes on the host: OS and paths, ports, processes, systemd, system users and homes, preflight."""
