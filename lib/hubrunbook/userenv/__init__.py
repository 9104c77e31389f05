"""The user environment (userenv.ipynb, issue 13): the env users' servers and kernels run from, apart from the hub's.

``requirements`` reads what goes in (user_packages, a requirements.txt or a conda environment.yml); ``build`` compiles
the complete pinned set with uv and syncs the env to it; ``kernels`` the optional extra kernels; ``verify`` imports the
packages in a kernel as a user, through the hub.
"""
