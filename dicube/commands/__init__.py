"""Subcommands of the ``dicube`` command line (see :mod:`dicube.cli`)."""
