"""The code that runs inside the sandbox. It imports nothing from Donjon.

It is mounted read-only at /opt/donjon/donjon_runtime and started by boot.py.
"""
