"""meetings: meetings with their iCalendar UID and sequence, the answers to them, and their minutes (issue 14)

Revision ID: meetings
Revises: robust
Create Date: 2026-12-10
"""

from alembic import op
import sqlalchemy as sa


revision = 'meetings'
down_revision = 'robust'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('meetings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('uid', sa.String(length=200), nullable=False),
    sa.Column('public_ref', sa.String(length=16), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('minutes_long', sa.Integer(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('location', sa.String(length=500), nullable=False),
    sa.Column('agenda', sa.Text(), nullable=False),
    sa.Column('called_by', sa.String(length=320), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('minutes_post_id', sa.Integer(), nullable=True),
    sa.Column('minutes_text', sa.Text(), nullable=False),
    sa.Column('minutes_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['group_id'], ['groups.id'], name=op.f('fk_meetings_group_id_groups'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['minutes_post_id'], ['posts.id'], name=op.f('fk_meetings_minutes_post_id_posts'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meetings')),
    sa.UniqueConstraint('uid', name=op.f('uq_meetings_uid')),
    sa.UniqueConstraint('public_ref', name=op.f('uq_meetings_public_ref'))
    )
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.create_index('ix_meetings_group_starts', ['group_id', 'starts_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_meetings_starts_at'), ['starts_at'], unique=False)
    op.create_table('meeting_answers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.Integer(), nullable=False),
    sa.Column('address_key', sa.String(length=320), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('answer', sa.String(length=8), nullable=False),
    sa.Column('via', sa.String(length=16), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['meeting_id'], ['meetings.id'], name=op.f('fk_meeting_answers_meeting_id_meetings'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meeting_answers')),
    sa.UniqueConstraint('meeting_id', 'address_key', name=op.f('uq_meeting_answers_meeting_id'))
    )


def downgrade() -> None:
    op.drop_table('meeting_answers')
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_meetings_starts_at'))
        batch_op.drop_index('ix_meetings_group_starts')
    op.drop_table('meetings')
