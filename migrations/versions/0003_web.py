"""the public archive: archive_posts (with full-text search) and a per-group archive setting

Revision ID: web
Revises: abuse
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa


revision = 'web'
down_revision = 'abuse'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archive', sa.String(length=8), nullable=False, server_default=''))
    op.create_table('archive_posts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('thread_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('author', sa.String(length=200), nullable=False),
    sa.Column('subject', sa.String(length=998), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('html', sa.Text(), nullable=False),
    sa.Column('attachments', sa.JSON(), nullable=False),
    sa.Column('posted_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['groups.id'], name=op.f('fk_archive_posts_group_id_groups'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['post_id'], ['posts.id'], name=op.f('fk_archive_posts_post_id_posts'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_archive_posts')),
    sa.UniqueConstraint('post_id', name=op.f('uq_archive_posts_post_id'))
    )
    with op.batch_alter_table('archive_posts', schema=None) as batch_op:
        batch_op.create_index('ix_archive_posts_group_month', ['group_id', 'month'], unique=False)
        batch_op.create_index('ix_archive_posts_group_message', ['group_id', 'message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_archive_posts_thread_id'), ['thread_id'], unique=False)
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite':
        # FTS5 with external content: the text lives once, in archive_posts (wgbot.archive.record fills both).
        op.execute("CREATE VIRTUAL TABLE archive_fts USING fts5(subject, body, content='archive_posts', "
                   "content_rowid='id', tokenize='unicode61 remove_diacritics 2')")
    else:
        op.execute("CREATE INDEX ix_archive_fts ON archive_posts "
                   "USING gin (to_tsvector('simple', subject || ' ' || body))")
    from wgbot.archive import backfill

    backfill(bind)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute("DROP TABLE archive_fts")
    op.drop_table('archive_posts')
    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.drop_column('archive')
