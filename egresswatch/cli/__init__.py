"""Command-line interface: one module per group of commands, assembled in main.py."""
