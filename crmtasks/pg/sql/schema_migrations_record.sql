INSERT INTO schema_migrations (version, name, checksum, complete)
VALUES (%(version)s, %(name)s, %(checksum)s, %(complete)s)
