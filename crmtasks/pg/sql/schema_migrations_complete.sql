UPDATE schema_migrations SET complete = true WHERE version = %(version)s
