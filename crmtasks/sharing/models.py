"""Peewee declarations of the sharing tables (schema: migration 0006_sharing_rules.sql).

Writing through these models (or any SQL) bumps ``sharing_epoch`` by
trigger; nothing in Python has to remember to invalidate a cache.
"""

from __future__ import annotations

import peewee
from playhouse.postgres_ext import DateTimeTZField

from crmtasks.models import BaseModel, Role


class SharingDefault(BaseModel):
    """The organization-wide default of one entity: private, public_read or public_read_write."""

    entity = peewee.TextField(primary_key=True)
    access = peewee.TextField()
    updated_at = DateTimeTZField()

    class Meta:
        table_name = "sharing_defaults"


class SharingRule(BaseModel):
    """A grant of read or edit on some records of an entity to the users of a role.

    ``kind`` is ``owner`` (records owned by users in ``owner_role``, and in
    the roles below it when ``owner_include_subordinates``) or ``criteria``
    (records whose ``field`` equals ``value``). The grantees are the users in
    ``grantee_role``, and in the roles below it when ``grantee_include_subordinates``.
    """

    name = peewee.TextField()
    entity = peewee.TextField()
    kind = peewee.TextField()
    owner_role = peewee.ForeignKeyField(Role, null=True, column_name="owner_role_id", backref="+", on_delete="CASCADE")
    owner_include_subordinates = peewee.BooleanField(default=False)
    field = peewee.TextField(null=True)
    value = peewee.TextField(null=True)
    grantee_role = peewee.ForeignKeyField(Role, column_name="grantee_role_id", backref="+", on_delete="CASCADE")
    grantee_include_subordinates = peewee.BooleanField(default=False)
    access = peewee.TextField()
    created_at = DateTimeTZField()

    class Meta:
        table_name = "sharing_rules"


class SharingEpoch(BaseModel):
    """The one row whose token changes with every change to sharing inputs (bumped by triggers only)."""

    singleton = peewee.BooleanField(primary_key=True, default=True)
    epoch = peewee.BigIntegerField()
    token = peewee.UUIDField()
    bumped_at = DateTimeTZField()

    class Meta:
        table_name = "sharing_epoch"


SHARING_MODELS = (SharingDefault, SharingRule, SharingEpoch)
