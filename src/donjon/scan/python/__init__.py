"""Donjon's taint analysis of Python modules: values, the interpreter and the sink rules.

Internal to `donjon.scan`; `donjon.scan.scanners.code.CodeScanner` is its one user.
"""
