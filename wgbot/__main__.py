"""`python -m wgbot` is the same as the `wgbot` command."""

from wgbot.cli import main

raise SystemExit(main())
