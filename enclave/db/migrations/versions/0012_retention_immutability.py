"""retention records of closed projects, and database triggers that make the audit log,
released egress requests (with their files, groups and votes) and destruction records
immutable

Revision ID: 0012_retention_immutability
Revises: 0011_incidents
Create Date: 2026-12-01 10:30:00

The triggers are written out here (not generated) so that this revision always creates
the same thing. On SQLite, a later batch migration that recreates one of these tables
drops its triggers: such a migration must create them again
(tests/integration/backup/test_immutability.py checks they exist at head).
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_retention_immutability"
down_revision = "0011_incidents"
branch_labels = None
depends_on = None

AUDIT = "audit events are immutable: append a new event instead"
RELEASED = "a released egress request, its files, groups and votes are immutable"
DESTROYED = "a destruction record is immutable"
CHILDREN = ("egress_files", "egress_file_groups", "egress_reviews")

SQLITE = [
    *(f"""CREATE TRIGGER audit_events_no_{op_.lower()} BEFORE {op_} ON audit_events
          BEGIN SELECT RAISE(ABORT, '{AUDIT}'); END""" for op_ in ("UPDATE", "DELETE")),
    *(f"""CREATE TRIGGER egress_requests_released_no_{op_.lower()} BEFORE {op_} ON egress_requests
          WHEN OLD.status = 'released' BEGIN SELECT RAISE(ABORT, '{RELEASED}'); END""" for op_ in ("UPDATE", "DELETE")),
    *(f"""CREATE TRIGGER {table}_released_no_{op_.lower()} BEFORE {op_} ON {table}
          WHEN EXISTS (SELECT 1 FROM egress_requests r WHERE r.id = OLD.request_id AND r.status = 'released')
          BEGIN SELECT RAISE(ABORT, '{RELEASED}'); END""" for table in CHILDREN for op_ in ("UPDATE", "DELETE")),
    *(f"""CREATE TRIGGER data_retention_destroyed_no_{op_.lower()} BEFORE {op_} ON data_retention
          WHEN OLD.destroyed_at IS NOT NULL BEGIN SELECT RAISE(ABORT, '{DESTROYED}'); END""" for op_ in ("UPDATE", "DELETE")),
]

POSTGRESQL = [
    """CREATE FUNCTION enclave_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation'; END $$""",
    f"""CREATE FUNCTION enclave_refuse_released_child() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF EXISTS (SELECT 1 FROM egress_requests r WHERE r.id = OLD.request_id AND r.status = 'released') THEN
           RAISE EXCEPTION '{RELEASED}' USING ERRCODE = 'restrict_violation';
         END IF;
         IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
         RETURN NEW;
       END $$""",
    f"""CREATE TRIGGER audit_events_immutable BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION enclave_refuse_change('{AUDIT}')""",
    f"""CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION enclave_refuse_change('{AUDIT}')""",
    f"""CREATE TRIGGER egress_requests_released_immutable BEFORE UPDATE OR DELETE ON egress_requests
        FOR EACH ROW WHEN (OLD.status = 'released') EXECUTE FUNCTION enclave_refuse_change('{RELEASED}')""",
    *(f"""CREATE TRIGGER {table}_released_immutable BEFORE UPDATE OR DELETE ON {table}
          FOR EACH ROW EXECUTE FUNCTION enclave_refuse_released_child()""" for table in CHILDREN),
    *(f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
          FOR EACH STATEMENT EXECUTE FUNCTION enclave_refuse_change('{RELEASED}')"""
      for table in ("egress_requests", *CHILDREN)),
    f"""CREATE TRIGGER data_retention_destroyed_immutable BEFORE UPDATE OR DELETE ON data_retention
        FOR EACH ROW WHEN (OLD.destroyed_at IS NOT NULL) EXECUTE FUNCTION enclave_refuse_change('{DESTROYED}')""",
]


def upgrade() -> None:
    op.create_table(
        "data_retention",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("destroy_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("archive_path", sa.Text(), nullable=True),
        sa.Column("archive_sha256", sa.String(length=64), nullable=True),
        sa.Column("archive_size", sa.BigInteger(), nullable=True),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroyed_by", sa.String(length=64), nullable=True),
        sa.Column("destruction_record", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.PrimaryKeyConstraint("project_id"),
    )
    for statement in SQLITE if op.get_bind().dialect.name == "sqlite" else POSTGRESQL:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE:
            op.execute(f"DROP TRIGGER IF EXISTS {statement.split()[2]}")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_immutable ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS egress_requests_released_immutable ON egress_requests")
        for table in ("egress_requests", *CHILDREN):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        for table in CHILDREN:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_released_immutable ON {table}")
        op.execute("DROP TRIGGER IF EXISTS data_retention_destroyed_immutable ON data_retention")
        op.execute("DROP FUNCTION IF EXISTS enclave_refuse_released_child()")
        op.execute("DROP FUNCTION IF EXISTS enclave_refuse_change()")
    op.drop_table("data_retention")
