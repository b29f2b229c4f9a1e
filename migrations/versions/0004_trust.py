"""mask the tokens of confirmation and approval addresses in stored inbound rows

Rows stored before this version keep `wgbot+confirm-TOKEN@` in plain text; from now on the store keeps
`wgbot+confirm-#SHA256@` (what wgbot.route.mask_token writes, and what the router reads back). Data only.

Revision ID: trust
Revises: web
Create Date: 2026-12-04
"""

import hashlib
import re

from alembic import op
import sqlalchemy as sa


revision = 'trust'
down_revision = 'web'
branch_labels = None
depends_on = None

# The same pattern and hash as wgbot.route.mask_token and wgbot.store.token_hash, frozen here.
_TOKEN_ADDRESS = re.compile(r"^(\s*<?[^@+<>\s]+\+(?:confirm|approval)-)([^@]*)(@.*)$", re.I | re.S)


def _mask(address: str) -> str:
    m = _TOKEN_ADDRESS.match(address)
    if m is None:
        return address
    digest = hashlib.sha256("".join(m.group(2).split()).lower().encode("ascii", "replace")).hexdigest()
    return f"{m.group(1)}#{digest}{m.group(3)}"


def upgrade() -> None:
    bind = op.get_bind()
    table = sa.table("inbound_messages", sa.column("id", sa.Integer), sa.column("recipient", sa.String))
    rows = bind.execute(sa.select(table.c.id, table.c.recipient).where(
        sa.or_(table.c.recipient.like("%+confirm-%"), table.c.recipient.like("%+approval-%")))).all()
    for row_id, recipient in rows:
        masked = _mask(recipient)
        if masked != recipient:
            bind.execute(table.update().where(table.c.id == row_id).values(recipient=masked))


def downgrade() -> None:
    """Nothing to undo: masking is one-way (a hash cannot be turned back into its token), and the masked rows
    are inbound rows already processed, which the older code only shows to the operator."""
