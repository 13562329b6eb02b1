"""Baseline: the API's users, tokens, login failures and audit log, and the control plane's state (jobs,
transitions, allocations, usage, queue meta, operator overrides, silences, alert state).

Tables that already exist are left alone: a database made by an older gpufleet (``create_all``, before
migrations) is adopted as it is and stamped.

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def _missing(tables: set[str], name: str) -> bool:
    return name not in tables


def upgrade() -> None:
    tables = set(sa.inspect(op.get_bind()).get_table_names())
    if _missing(tables, 'audit_log'):
        op.create_table('audit_log',
        sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('ts', sa.Float(), nullable=False),
        sa.Column('user', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=256), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('prev_hash', sa.String(length=64), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('seq'),
        sa.UniqueConstraint('hash')
        )
        op.create_index(op.f('ix_audit_log_action'), 'audit_log', ['action'], unique=False)
        op.create_index(op.f('ix_audit_log_target'), 'audit_log', ['target'], unique=False)
        op.create_index(op.f('ix_audit_log_ts'), 'audit_log', ['ts'], unique=False)
        op.create_index(op.f('ix_audit_log_user'), 'audit_log', ['user'], unique=False)
    if _missing(tables, 'login_counters'):
        op.create_table('login_counters',
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('window_start', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('key')
        )
        op.create_index(op.f('ix_login_counters_window_start'), 'login_counters', ['window_start'], unique=False)
    if _missing(tables, 'revoked_access_tokens'):
        op.create_table('revoked_access_tokens',
        sa.Column('jti', sa.String(length=64), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('jti')
        )
    if _missing(tables, 'users'):
        op.create_table('users',
        sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column('username', sa.String(length=64), nullable=False),
        sa.Column('password_hash', sa.String(length=256), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('team', sa.String(length=64), nullable=True),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.Column('token_version', sa.Integer(), nullable=False),
        sa.Column('nonce', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sqlite_autoincrement=True
        )
        op.create_index(op.f('ix_users_username'), 'users', ['username'], unique=True)
    if _missing(tables, 'auth_sessions'):
        op.create_table('auth_sessions',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index(op.f('ix_auth_sessions_expires_at'), 'auth_sessions', ['expires_at'], unique=False)
        op.create_index(op.f('ix_auth_sessions_user_id'), 'auth_sessions', ['user_id'], unique=False)
    if _missing(tables, 'refresh_tokens'):
        op.create_table('refresh_tokens',
        sa.Column('jti', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('session_id', sa.String(length=32), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('jti')
        )
        op.create_index(op.f('ix_refresh_tokens_session_id'), 'refresh_tokens', ['session_id'], unique=False)
        op.create_index(op.f('ix_refresh_tokens_user_id'), 'refresh_tokens', ['user_id'], unique=False)
    if _missing(tables, 'alert_state'):
        op.create_table('alert_state',
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('key', sa.String(length=512), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('kind', 'key')
        )
    if _missing(tables, 'allocations'):
        op.create_table('allocations',
        sa.Column('job', sa.String(length=256), nullable=False),
        sa.Column('uuid', sa.String(length=128), nullable=False),
        sa.Column('node', sa.String(length=256), nullable=False),
        sa.Column('milli', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('job', 'uuid')
        )
        op.create_index(op.f('ix_allocations_node'), 'allocations', ['node'], unique=False)
    if _missing(tables, 'job_transitions'):
        op.create_table('job_transitions',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('job', sa.String(length=256), nullable=False),
        sa.Column('from_state', sa.String(length=16), nullable=True),
        sa.Column('to_state', sa.String(length=16), nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index(op.f('ix_job_transitions_at'), 'job_transitions', ['at'], unique=False)
        op.create_index(op.f('ix_job_transitions_job'), 'job_transitions', ['job'], unique=False)
    if _missing(tables, 'job_usage'):
        op.create_table('job_usage',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('job', sa.String(length=256), nullable=False),
        sa.Column('user', sa.String(length=64), nullable=False),
        sa.Column('team', sa.String(length=64), nullable=False),
        sa.Column('gpu_type', sa.String(length=64), nullable=False),
        sa.Column('gpus', sa.Float(), nullable=False),
        sa.Column('start', sa.Float(), nullable=False),
        sa.Column('end', sa.Float(), nullable=False),
        sa.Column('uuids', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index(op.f('ix_job_usage_job'), 'job_usage', ['job'], unique=False)
    if _missing(tables, 'jobs'):
        op.create_table('jobs',
        sa.Column('name', sa.String(length=256), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('user', sa.String(length=64), nullable=False),
        sa.Column('team', sa.String(length=64), nullable=False),
        sa.Column('submitted', sa.Float(), nullable=False),
        sa.Column('started', sa.Float(), nullable=True),
        sa.Column('finished', sa.Float(), nullable=True),
        sa.Column('record', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('name')
        )
        op.create_index(op.f('ix_jobs_seq'), 'jobs', ['seq'], unique=False)
        op.create_index(op.f('ix_jobs_status'), 'jobs', ['status'], unique=False)
        op.create_index('ix_jobs_status_seq', 'jobs', ['status', 'seq'], unique=False)
        op.create_index(op.f('ix_jobs_user'), 'jobs', ['user'], unique=False)
    if _missing(tables, 'operator_overrides'):
        op.create_table('operator_overrides',
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('target', sa.String(length=256), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=1024), nullable=False),
        sa.Column('by', sa.String(length=64), nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('kind', 'target')
        )
    if _missing(tables, 'queue_meta'):
        op.create_table('queue_meta',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('value', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('key')
        )
    if _missing(tables, 'silences'):
        op.create_table('silences',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('starts_at', sa.Float(), nullable=False),
        sa.Column('ends_at', sa.Float(), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index(op.f('ix_silences_ends_at'), 'silences', ['ends_at'], unique=False)


def downgrade() -> None:
    for name in ('silences', 'queue_meta', 'operator_overrides', 'jobs', 'job_usage', 'job_transitions', 'allocations', 'alert_state', 'refresh_tokens', 'auth_sessions', 'users', 'revoked_access_tokens', 'login_counters', 'audit_log'):
        op.drop_table(name)
