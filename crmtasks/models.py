"""Peewee declarations of the CRM tables.

The schema itself is owned by the SQL migrations in ``crmtasks/migrations``;
these models only describe it for Python code (a test checks the two agree).
Behaviour that spans models lives in plain functions elsewhere.
"""

from __future__ import annotations

import peewee
from playhouse.postgres_ext import BinaryJSONField, DateTimeTZField

from crmtasks.pg.db import database


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Role(BaseModel):
    """A node of the role hierarchy: a manager's role is the parent of its reports' roles."""

    name = peewee.TextField()
    parent = peewee.ForeignKeyField("self", null=True, backref="children", column_name="parent_id")

    class Meta:
        table_name = "roles"


class User(BaseModel):
    """A CRM user: owns records, has one role, may be deactivated but never deleted."""

    username = peewee.TextField(unique=True)
    full_name = peewee.TextField()
    email = peewee.TextField(null=True)
    role = peewee.ForeignKeyField(Role, null=True, backref="users", column_name="role_id")
    is_active = peewee.BooleanField(default=True)
    created_at = DateTimeTZField()

    class Meta:
        table_name = "users"


class Account(BaseModel):
    name = peewee.TextField()
    industry = peewee.TextField(null=True)
    region = peewee.TextField(null=True)
    owner = peewee.ForeignKeyField(User, null=True, backref="accounts", column_name="owner_id")
    created_at = DateTimeTZField()
    updated_at = DateTimeTZField()

    class Meta:
        table_name = "accounts"


class Contact(BaseModel):
    name = peewee.TextField()
    email = peewee.TextField(null=True)
    account = peewee.ForeignKeyField(Account, null=True, backref="contacts", column_name="account_id")
    owner = peewee.ForeignKeyField(User, null=True, backref="contacts", column_name="owner_id")
    lead_source = peewee.TextField(null=True)
    created_at = DateTimeTZField()
    updated_at = DateTimeTZField()

    class Meta:
        table_name = "contacts"


class Lead(BaseModel):
    name = peewee.TextField()
    company = peewee.TextField(null=True)
    email = peewee.TextField(null=True)
    status = peewee.TextField()
    industry = peewee.TextField(null=True)
    source = peewee.TextField(null=True)
    rating = peewee.TextField(null=True)
    owner = peewee.ForeignKeyField(User, null=True, backref="leads", column_name="owner_id")
    created_at = DateTimeTZField()
    updated_at = DateTimeTZField()

    class Meta:
        table_name = "leads"


class Deal(BaseModel):
    name = peewee.TextField()
    account = peewee.ForeignKeyField(Account, null=True, backref="deals", column_name="account_id")
    owner = peewee.ForeignKeyField(User, null=True, backref="deals", column_name="owner_id")
    stage = peewee.TextField()
    amount = peewee.DecimalField(max_digits=14, decimal_places=2, null=True)
    probability = peewee.SmallIntegerField(null=True)
    close_date = peewee.DateField(null=True)
    created_at = DateTimeTZField()
    updated_at = DateTimeTZField()

    class Meta:
        table_name = "deals"


class TaskRun(BaseModel):
    """One run of a periodic job: who triggered it, how it ended, what it did."""

    task = peewee.TextField()
    trigger = peewee.TextField()  # schedule | manual | retry
    message_id = peewee.TextField(null=True)
    status = peewee.TextField()  # running | succeeded | failed | skipped
    started_at = DateTimeTZField()
    finished_at = DateTimeTZField(null=True)
    stats = BinaryJSONField(default=dict)
    error = peewee.TextField(null=True)
    host = peewee.TextField(null=True)
    pid = peewee.IntegerField(null=True)
    started_by = peewee.TextField(null=True)  # who started a manual run: "ops (dashboard)", "alice@web-1 (cli)"

    class Meta:
        table_name = "task_runs"


class ScheduleSlot(BaseModel):
    """One schedule slot of one job: enqueued once, then ran or skipped (with the reason)."""

    task = peewee.TextField()
    slot_at = DateTimeTZField()
    state = peewee.TextField()  # enqueued | ran | skipped
    reason = peewee.TextField(null=True)  # overlap | stale | missed | paused | catch_up
    message_id = peewee.TextField(null=True)
    run = peewee.ForeignKeyField(TaskRun, null=True, column_name="run_id", backref="slots")
    scheduler = peewee.TextField(null=True)
    created_at = DateTimeTZField()
    updated_at = DateTimeTZField()

    class Meta:
        table_name = "schedule_slots"
        primary_key = peewee.CompositeKey("task", "slot_at")


class JobPause(BaseModel):
    """A job an operator paused: neither scheduled nor run until resumed."""

    task = peewee.TextField(primary_key=True)
    note = peewee.TextField(default="")
    paused_at = DateTimeTZField()

    class Meta:
        table_name = "job_pauses"


class JobSchedule(BaseModel):
    """A job's schedule as an operator set it at runtime (cron and IANA zone); no row: the registry's default."""

    task = peewee.TextField(primary_key=True)
    cron = peewee.TextField()
    zone = peewee.TextField(default="UTC")
    changed_at = DateTimeTZField()
    changed_by = peewee.TextField(default="")

    class Meta:
        table_name = "job_schedules"


CRM_MODELS = (Role, User, Account, Contact, Lead, Deal)
ALL_MODELS = CRM_MODELS + (TaskRun, ScheduleSlot, JobPause, JobSchedule)
