"""The package version: one home, imported by every module that writes it into a file."""

__version__ = "0.1.0"
