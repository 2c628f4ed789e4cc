"""The agent's control channel: an AF_UNIX socket through which the unprivileged web process
(and the CLI) ask the running agent to acknowledge alerts and start or stop sessions.
"""
