"""Alembic environment: migrations run on the connection wgbot hands over (see wgbot.db.migrate)."""

from alembic import context

from wgbot.store import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `wgbot init` (wgbot.db.migrate), not the alembic command")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
