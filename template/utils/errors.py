"""Errors that stop a neuron before it runs: said in one line with what to do, never as a traceback."""


class CannotStart(RuntimeError):
    """The neuron cannot start; the message says why and what to do."""
