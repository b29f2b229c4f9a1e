"""robust: a message to many recipients stored once; posts found by Message-ID (issue 11 item 8)

Revision ID: robust
Revises: trust
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa


revision = 'robust'
down_revision = 'trust'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('raw_of', sa.Integer(), nullable=True))
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.create_index('ix_posts_group_message', ['group_id', 'message_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.drop_index('ix_posts_group_message')
    # Give every row its bytes back before the reference goes.
    op.execute("UPDATE inbound_messages SET raw = (SELECT h.raw FROM inbound_messages h "
               "WHERE h.id = inbound_messages.raw_of) WHERE raw_of IS NOT NULL")
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_column('raw_of')
