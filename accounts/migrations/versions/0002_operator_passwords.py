"""Operators sign in to the web console with a password: ``channels.password_hash`` (scrypt, salted;
null: no console login).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(256)))


def downgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("password_hash")
