"""wgbot: an email-first secretariat for networks that run working groups."""

__version__ = "0.1.0"
