"""Pipeline stages (plug-ins), found by name through a small registry."""

from . import basic
from .registry import available, create, register

__all__ = ["available", "basic", "create", "register"]
