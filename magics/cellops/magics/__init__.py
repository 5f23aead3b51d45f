"""IPython magics: parse arguments, call the core, display. No logic of their own."""

from .step_magics import StepMagics

__all__ = ["StepMagics"]
