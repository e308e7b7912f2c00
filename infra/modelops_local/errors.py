"""Errors of the local twin. Each message is one line a user can act on."""

from __future__ import annotations


class TwinError(Exception):
    """Base class: the twin cannot do what was asked."""


class TemplateError(TwinError):
    """The template is missing, unreadable, or not a template the twin can run."""


class PortInUseError(TwinError):
    """A port the twin was asked to listen on is taken."""


class FunctionNotFoundError(TwinError):
    """No function of that name (logical id or physical name) in the template."""


class ExecutionExistsError(TwinError):
    """A state machine execution of that name was already started (Step Functions' ExecutionAlreadyExists)."""
