"""wgbot: an email-first secretariat for networks that run working groups."""

__version__ = "0.1.0"

# The package's layers, lowest first (README "How it is built"). A module imports only modules of a lower
# layer, function-level and TYPE_CHECKING imports included, so there is no import cycle;
# tests/unit/test_layers.py reads every module with `ast` and fails on any other import. A new module is
# added here, on the lowest layer above everything it imports.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "resources", "countries", "writegate", "watchdog", "leader", "autoreply"),
    ("dsn",),
    ("config", "parse", "store"),
    ("rules", "render", "route", "ical", "names", "db", "status", "preflight", "handoff", "gate", "mimesafe", "archive",
     "importer", "transports"),
    ("outbox", "organisations", "clibase"),
    ("context", "bounces", "unreadable"),                  # Context, Result, the registry, confirmations
    ("pending", "leniency", "answers"),                    # requests that wait for a person
    ("groups",),                                           # group and membership facts and changes
    ("invitations", "held", "leaving", "commands"),
    ("lists",),
    ("reports", "digests", "meetings"),
    ("workgroups", "rollup"),
    ("schedule", "inbox", "webdata"),                      # the places that import the features
    ("web", "smtp_server", "imap_poller"),
    ("app", "cligroups"),
    ("cli",),
    ("__main__",),
)
